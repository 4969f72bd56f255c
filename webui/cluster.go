package webui

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-pbx/gatehouse/cluster"
)

// ClusterStatus is this node's view of its cluster (a *cluster.Node).
type ClusterStatus interface {
	Status() cluster.Status
}

// clusterHealth says why /healthz should fail for the cluster: a node
// that has not joined yet or lost its quorum still enforces its own copy
// of the blacklist, but what it learns no longer reaches the others.
func (s *Server) clusterHealth() (bad bool, why string) {
	if s.opts.Cluster == nil {
		return false, ""
	}
	st := s.opts.Cluster.Status()
	switch {
	case !st.Ready:
		return true, "cluster: not joined (" + st.LastErr + ")"
	case !st.Quorum:
		return true, "cluster: no quorum; enforcing the local copy"
	}
	return false, ""
}

// apiCluster answers GET /api/cluster: the nodes seen in the last minute.
func (s *Server) apiCluster(w http.ResponseWriter, r *http.Request) {
	if s.opts.Cluster == nil {
		writeError(w, http.StatusNotFound, "not a cluster: the configuration has no cluster section")
		return
	}
	writeJSON(w, http.StatusOK, s.opts.Cluster.Status())
}

// clusterMetrics are the figures of the cluster.
type clusterMetrics struct {
	ready, quorum, current, routes, queued, dropped, nodes, seen, nodeQuorum, nodeUp, buckets *prometheus.Desc
}

func newClusterMetrics(d func(name, help string, labels ...string) *prometheus.Desc) clusterMetrics {
	return clusterMetrics{
		ready:      d("cluster_ready", "1 when this node has joined the cluster (its buckets are open)."),
		quorum:     d("cluster_quorum", "1 when this node's JetStream has a quorum behind it."),
		current:    d("cluster_current", "1 when this node's copies of the buckets are up to date (a node restarted with an empty disk copies them first)."),
		routes:     d("cluster_routes", "Route connections of the embedded NATS server to the other nodes (several per node: NATS pools them)."),
		queued:     d("cluster_queued", "Writes waiting to reach the cluster."),
		dropped:    d("cluster_dropped_total", "Writes dropped because the queue for the cluster was full."),
		nodes:      d("cluster_nodes", "Nodes seen in the last minute, this one included."),
		seen:       d("cluster_node_seen_seconds", "Seconds since each node last wrote its heartbeat.", "node"),
		nodeQuorum: d("cluster_node_quorum", "1 when the node said in its last heartbeat that it had a quorum.", "node"),
		nodeUp:     d("cluster_node_up_seconds", "Seconds since each node started.", "node"),
		buckets:    d("cluster_bucket_entries", "Entries in each of the cluster's buckets (as of this node's last heartbeat).", "bucket"),
	}
}

func (m *clusterMetrics) collect(c ClusterStatus, ch chan<- prometheus.Metric) {
	if c == nil {
		return
	}
	st := c.Status()
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	g(m.ready, b(st.Ready))
	g(m.quorum, b(st.Quorum))
	g(m.current, b(st.Current))
	g(m.routes, float64(st.Routes))
	g(m.queued, float64(st.Queued))
	ch <- prometheus.MustNewConstMetric(m.dropped, prometheus.CounterValue, float64(st.Dropped))
	g(m.nodes, float64(len(st.Nodes)))
	for _, n := range st.Nodes {
		g(m.seen, time.Since(n.Seen).Seconds(), n.Name)
		g(m.nodeQuorum, b(n.Quorum), n.Name)
		g(m.nodeUp, time.Since(n.Since).Seconds(), n.Name)
	}
	for b, v := range st.Buckets {
		g(m.buckets, float64(v), b)
	}
}
