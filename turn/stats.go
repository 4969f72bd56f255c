package turn

import "sync/atomic"

// Stats are the server's counters since New, for metrics.
type Stats struct {
	AllocationsActive int    // allocations open now
	Allocations       uint64 // allocations created
	AuthFailures      uint64 // requests whose credentials failed (each reported to the blacklist)
	// RelayedPackets and RelayedBytes count datagrams through relay sockets,
	// both directions.
	RelayedPackets uint64
	RelayedBytes   uint64
	// Blocked counts datagrams, connections and stream frames dropped
	// because their source is blacklisted.
	Blocked         uint64
	DeniedPeers     uint64 // permissions and channel bindings refused for a denied peer
	QuotaRejections uint64 // allocations refused by max_allocations or max_allocations_per_user
	Throttled       uint64 // requests dropped over the per-address rate
	Malformed       uint64 // oversized datagrams and streams that broke STUN framing
	Rejected        uint64 // messages pion refused: undecodable, unknown method, no allocation, ...
	// Bindings counts Binding requests answered with a success, Classic
	// the RFC 3489 ones among them (no magic cookie), Changed those
	// answered from another socket than they came on (CHANGE-REQUEST).
	Bindings, ClassicBindings, ChangedBindings uint64
}

// counters is the live form of Stats, updated without locks on hot paths.
type counters struct {
	allocations, authFailures, relayedPackets, relayedBytes atomic.Uint64
	blocked, deniedPeers, quotaRejections, throttled        atomic.Uint64
	malformed, rejected                                     atomic.Uint64
	bindings, classicBindings, changedBindings              atomic.Uint64
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	active := s.active
	s.mu.Unlock()
	c := &s.stats
	return Stats{
		AllocationsActive: active,
		Allocations:       c.allocations.Load(),
		AuthFailures:      c.authFailures.Load(),
		RelayedPackets:    c.relayedPackets.Load(),
		RelayedBytes:      c.relayedBytes.Load(),
		Blocked:           c.blocked.Load(),
		DeniedPeers:       c.deniedPeers.Load(),
		QuotaRejections:   c.quotaRejections.Load(),
		Throttled:         c.throttled.Load(),
		Malformed:         c.malformed.Load(),
		Rejected:          c.rejected.Load(),
		Bindings:          c.bindings.Load(),
		ClassicBindings:   c.classicBindings.Load(),
		ChangedBindings:   c.changedBindings.Load(),
	}
}
