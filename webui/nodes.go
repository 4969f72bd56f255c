package webui

import (
	"net/http"
	"time"

	"github.com/gatehouse-pbx/gatehouse/cluster"
)

// nodeLate is how long after its last heartbeat (every 5 s) a node is shown
// as late: two heartbeats missed. A node gone for a minute drops out of
// the list with its entry in the bucket.
const nodeLate = 12 * time.Second

// NodeRow is one node of the cluster as the nodes page lists it.
type NodeRow struct {
	cluster.NodeInfo
	This bool // the node serving this page
	Late bool // no heartbeat for nodeLate
}

// nodeRows lists the nodes this node has heard of, by name.
func (s *Server) nodeRows(st cluster.Status) []NodeRow {
	now := s.now()
	var rows []NodeRow
	for _, n := range st.Nodes {
		rows = append(rows, NodeRow{NodeInfo: n, This: n.Name == st.Node, Late: now.Sub(n.Seen) > nodeLate})
	}
	return rows
}

func (s *Server) nodesPage(w http.ResponseWriter, r *http.Request) {
	if s.opts.Cluster == nil {
		s.render(w, r, http.StatusNotFound, "nodes", &view{Title: "Nodes", Nav: "nodes",
			Error: "Not a cluster: the configuration has no cluster section."})
		return
	}
	st := s.opts.Cluster.Status()
	s.render(w, r, http.StatusOK, "nodes", &view{Title: "Nodes", Nav: "nodes", Cluster: &st, Nodes: s.nodeRows(st)})
}
