package webui

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gatehouse-pbx/gatehouse/cluster"
	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// metrics reads the counters the parts keep (proxy.Stats, blacklist.Stats,
// turn.Stats) at scrape time: nothing on the data path knows Prometheus,
// and a scrape always sees the current values.
type metrics struct {
	s *Server

	connsActive, accepted, blockedAccept, forwarded, refusedSvc, refusals *prometheus.Desc
	dialErrors, dialLatency                                               *prometheus.Desc
	blEntries, blTracked, blWhite, blBlocks, blRejected, blEvicted        *prometheus.Desc
	blAggregated, gateOpen, gateRefused, gateCut, gateExhausted           *prometheus.Desc
	turnActive, turnAllocs, turnAuthFail, turnBytes, turnBlocked          *prometheus.Desc
	turnBindings, turnChanged                                             *prometheus.Desc
	adminSessions, events, targetUp                                       *prometheus.Desc
	agentTunnels, agentStreams, agentBytes, agentBeat                     *prometheus.Desc
	agentNodes, agentForwarded                                            *prometheus.Desc
	cluster                                                               clusterMetrics
}

func (s *Server) newMetrics() http.Handler {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("gatehouse_"+name, help, labels, nil)
	}
	m := &metrics{
		s:             s,
		connsActive:   d("connections_active", "Connections open now, by service type and service (\"\" before routing).", "type", "service"),
		accepted:      d("connections_accepted_total", "Connections accepted, by service type.", "type"),
		blockedAccept: d("connections_blocked_total", "Connections closed at accept because the client is blacklisted, by service type.", "type"),
		forwarded:     d("requests_forwarded_total", "Requests routed to a target, by service type and service.", "type", "service"),
		refusedSvc:    d("requests_refused_total", "Suspicious requests, by service type and service (\"\" when no configured service was named).", "type", "service"),
		refusals:      d("refusals_total", "Suspicious requests on the service ports, by reason.", "reason"),
		dialErrors:    d("target_dial_errors_total", "Failed connections to a target, by service.", "service"),
		dialLatency:   d("target_dial_seconds", "Time to connect to a target (TLS included), by service.", "service"),
		blEntries:     d("blacklist_entries", "Addresses and networks blocked now: automatic and manual entries."),
		blTracked:     d("blacklist_tracked", "Client addresses with suspicious requests being counted."),
		blWhite:       d("whitelist_entries", "Whitelist entries, from the configuration and run time."),
		blBlocks:      d("blacklist_blocks_total", "Automatic blocks since start."),
		blRejected:    d("blacklist_rejected_total", "Connections and packets refused because their source is blocked."),
		blEvicted:     d("blacklist_evicted_total", "Idle lone counters forgotten because blacklist.max_tracked was reached (blocks never are)."),
		blAggregated:  d("blacklist_aggregated_total", "Ranges (/24, /48) folded into one record because blacklist.max_tracked was reached."),
		gateOpen:      d("gate_connections", "Connections open on every listener (services, TURN over TCP/TLS, admin)."),
		gateRefused:   d("gate_refused_total", "Connections closed at accept for limits.max_conns_per_ip, limits.max_conns or the range rules (limits.max_conns_per_range)."),
		gateCut:       d("gate_cut_total", "Open connections closed because their client was blocked."),
		gateExhausted: d("accept_exhausted", "1 while accepting fails (out of file descriptors), else 0."),
		turnActive:    d("turn_allocations", "TURN allocations open now."),
		turnAllocs:    d("turn_allocations_total", "TURN allocations created since the TURN server started."),
		turnAuthFail:  d("turn_auth_failures_total", "TURN requests whose credentials failed."),
		turnBytes:     d("turn_relayed_bytes_total", "Bytes relayed by TURN, both directions."),
		turnBlocked:   d("turn_blocked_total", "TURN datagrams and connections dropped because their source is blocked."),
		turnBindings:  d("turn_bindings_total", "STUN Binding requests answered with a success, by form (rfc5389 with the magic cookie, rfc3489 classic without).", "form"),
		turnChanged:   d("turn_bindings_changed_total", "Binding requests answered from another socket than they came on (CHANGE-REQUEST, RFC 5780 / RFC 3489)."),
		adminSessions: d("admin_sessions", "Admin UI sessions in force."),
		agentTunnels:  d("agent_tunnels", "Agent tunnels up, by account.", "account"),
		agentStreams:  d("agent_streams", "Streams (forwarded connections) open through agent tunnels, by account and agent address.", "account", "agent"),
		agentBytes:    d("agent_bytes_total", "Bytes through agent tunnels, by account, agent address and direction (in: from the agent).", "account", "agent", "direction"),
		agentBeat:     d("agent_heartbeat_age_seconds", "Seconds since the last answered heartbeat, by account and agent address.", "account", "agent"),
		agentNodes:    d("agent_cluster_tunnels", "Agent tunnels up on every node of the cluster, by node and account (this node's and the registrations of the others).", "node", "account"),
		agentForwarded: d("agent_forwarded_total", "Connections for agents carried between cluster nodes, by direction (out: to the node holding the tunnel; in: from another node to a tunnel here), service, the other node and result (carried, failed).",
			"direction", "service", "node", "result"),
		targetUp: d("target_up", "1 while a target port answers its health check, 0 while it is down; absent until first checked.", "target", "type", "service"),
		events:   d("suspicious_events_total", "Suspicious requests reported to the blacklist by every part (service ports, TURN, admin)."),
	}
	m.cluster = newClusterMetrics(d)
	reg := prometheus.NewRegistry()
	reg.MustRegister(m,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{Namespace: "gatehouse"}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(m, ch) }

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v int, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	s := m.s
	st := s.opts.Proxy.Stats()
	for _, a := range activeByService(s.opts.Proxy.Conns()) {
		gauge(m.connsActive, a.n, a.typ, a.service)
	}
	for typ, n := range st.Accepted {
		counter(m.accepted, n, typ)
		counter(m.blockedAccept, st.Blocked[typ], typ)
	}
	for _, ss := range st.Services {
		counter(m.forwarded, ss.Forwarded, ss.Type, ss.Service)
		counter(m.refusedSvc, ss.Refused, ss.Type, ss.Service)
	}
	for reason, n := range st.Reasons {
		counter(m.refusals, n, string(reason))
	}
	for svc, n := range st.DialErrors {
		counter(m.dialErrors, n, svc)
	}
	for svc, h := range st.DialLatency {
		buckets := make(map[float64]uint64, len(proxy.DialBuckets))
		for i, b := range proxy.DialBuckets {
			buckets[b] = h.Buckets[i]
		}
		ch <- prometheus.MustNewConstHistogram(m.dialLatency, h.Count, h.Sum, buckets, svc)
	}

	bs := s.opts.Blacklist.Stats()
	gauge(m.blEntries, bs.ActiveBlocked)
	gauge(m.blTracked, bs.Tracked)
	gauge(m.blWhite, bs.Whitelisted)
	counter(m.blBlocks, bs.Blocks)
	counter(m.blRejected, bs.RejectedAtAccept)
	counter(m.blEvicted, bs.Evicted)
	counter(m.blAggregated, bs.Aggregated)
	gs := s.gate().Stats()
	gauge(m.gateOpen, gs.Open)
	counter(m.gateRefused, gs.RefusedCap)
	counter(m.gateCut, gs.CutAtBlock)
	exhausted := 0
	if gs.AcceptError != "" {
		exhausted = 1
	}
	gauge(m.gateExhausted, exhausted)

	// TURN metrics are there whenever TURN is, so that a dashboard can tell
	// "no allocations" from "no TURN".
	if t := s.opts.TURN(); t != nil {
		ts := t.Stats()
		gauge(m.turnActive, ts.AllocationsActive)
		counter(m.turnAllocs, ts.Allocations)
		counter(m.turnAuthFail, ts.AuthFailures)
		counter(m.turnBytes, ts.RelayedBytes)
		counter(m.turnBlocked, ts.Blocked)
		counter(m.turnBindings, ts.Bindings-ts.ClassicBindings, "rfc5389")
		counter(m.turnBindings, ts.ClassicBindings, "rfc3489")
		counter(m.turnChanged, ts.ChangedBindings)
	}
	perAccount := map[string]int{}
	for _, a := range s.cfg.Load().Agents.Accounts {
		perAccount[a.Name] = 0 // an account with no tunnel shows 0, not nothing
	}
	perNode := map[[2]string]int{}
	for _, t := range s.tunnels() {
		if t.Node != "" {
			perNode[[2]string{t.Node, t.Account}]++
		}
		if t.Remote {
			continue // another node's: its figures are there
		}
		perAccount[t.Account]++
		ch <- prometheus.MustNewConstMetric(m.agentStreams, prometheus.GaugeValue, float64(t.Streams), t.Account, t.Agent)
		ch <- prometheus.MustNewConstMetric(m.agentBytes, prometheus.CounterValue, float64(t.BytesIn), t.Account, t.Agent, "in")
		ch <- prometheus.MustNewConstMetric(m.agentBytes, prometheus.CounterValue, float64(t.BytesOut), t.Account, t.Agent, "out")
		ch <- prometheus.MustNewConstMetric(m.agentBeat, prometheus.GaugeValue, s.now().Sub(t.LastHeartbeat).Seconds(), t.Account, t.Agent)
	}
	for acc, n := range perAccount {
		gauge(m.agentTunnels, n, acc)
	}
	for k, n := range perNode {
		gauge(m.agentNodes, n, k[0], k[1])
	}
	if f, ok := s.opts.Agents.(interface{ Forwards() []cluster.ForwardStat }); ok {
		for _, fs := range f.Forwards() {
			counter(m.agentForwarded, fs.Carried, fs.Direction, fs.Service, fs.Node, "carried")
			counter(m.agentForwarded, fs.Failed, fs.Direction, fs.Service, fs.Node, "failed")
		}
	}
	if s.opts.Health != nil {
		for _, t := range s.opts.Health.Targets() {
			if t.State == "unknown" {
				continue
			}
			up := 0
			if t.State == "up" {
				up = 1
			}
			for _, svc := range t.Services {
				gauge(m.targetUp, up, t.Addr, t.Type, svc)
			}
		}
	}
	gauge(m.adminSessions, s.sessions.count())
	if s.opts.Events != nil {
		counter(m.events, s.opts.Events.Total())
	}
	m.cluster.collect(s.opts.Cluster, ch)
}

// active counts open connections of one service type and service.
type active struct {
	typ, service string
	n            int
}

func activeByService(conns []proxy.ConnStatus) []active {
	idx := map[[2]string]int{}
	var out []active
	for _, c := range conns {
		k := [2]string{c.Type, c.Service}
		i, ok := idx[k]
		if !ok {
			i = len(out)
			idx[k] = i
			out = append(out, active{typ: c.Type, service: c.Service})
		}
		out[i].n++
	}
	return out
}

// serveMetrics answers /metrics: public when admin.metrics_public, else
// guarded like the API.
func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	if !s.cfg.Load().Admin.MetricsPublic && s.authenticate(w, r) == nil {
		return
	}
	s.metrics.ServeHTTP(w, r)
}
