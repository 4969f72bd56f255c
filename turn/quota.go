package turn

import (
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/gatehouse-pbx/gatehouse/blacklist"
)

// This file holds the hooks pion calls: authentication, quotas, peer
// permissions and allocation events.

// authenticate is pion's AuthHandler. pion calls it only for requests that
// carry credentials and a valid nonce, so the first unauthenticated
// Allocate (answered with a 401 challenge) never gets here.
func (s *Server) authenticate(username, realm string, src net.Addr) ([]byte, bool) {
	key, reason := s.creds.key(username, realm)
	if reason != "" {
		s.authFailed(addrOf(src), username, reason)
		return nil, false
	}
	return key, true
}

// onAuth sees the verdict of the MESSAGE-INTEGRITY check that follows a
// successful key look-up: false is a wrong password.
func (s *Server) onAuth(src, _ net.Addr, _, username, _, _ string, ok bool) {
	if !ok {
		s.authFailed(addrOf(src), username, reasonBadPassword)
	}
}

func (s *Server) authFailed(client netip.Addr, username, reason string) {
	s.stats.authFailures.Add(1)
	s.logs.Log(slog.LevelWarn, "turn: authentication failed",
		"client", client, "service", "turn", "user", username, "reason", reason)
	if s.guard != nil {
		s.guard.Report(blacklist.Event{Client: client, Type: "turn", Reason: reason, Time: time.Now()})
	}
}

// quota is pion's QuotaHandler, asked before each allocation. relays
// enforces the total again exactly; here it earns the client a 486 rather
// than a 508.
func (s *Server) quota(username, _ string, src net.Addr) bool {
	user := s.creds.quotaUser(username)
	s.mu.Lock()
	total, mine := s.active, s.perUser[user]
	s.mu.Unlock()
	if total < s.cfg.maxAllocs && mine < s.cfg.maxPerUser {
		return true
	}
	s.stats.quotaRejections.Add(1)
	s.logs.Log(slog.LevelWarn, "turn: allocation quota reached", "client", addrOf(src), "service", "turn",
		"user", username, "user_allocations", mine, "allocations", total)
	return false
}

func (s *Server) onAllocationCreated(src, _ net.Addr, _, username, _ string, _ net.Addr, _ int) {
	if c := s.streamOf(src); c != nil {
		c.allocs.Add(1)
	}
	user := s.creds.quotaUser(username)
	s.stats.allocations.Add(1)
	s.mu.Lock()
	s.active++
	s.perUser[user]++
	s.mu.Unlock()
}

func (s *Server) onAllocationDeleted(src, _ net.Addr, _, username, _ string) {
	if c := s.streamOf(src); c != nil && c.allocs.Add(-1) == 0 {
		c.bare.Store(time.Now().UnixNano())
	}
	user := s.creds.quotaUser(username)
	s.mu.Lock()
	s.active--
	if s.perUser[user]--; s.perUser[user] <= 0 {
		delete(s.perUser, user)
	}
	s.mu.Unlock()
}

// onError counts messages pion refused. pion's text names the client.
func (s *Server) onError(src, _ net.Addr, _, message string) {
	s.stats.rejected.Add(1)
	s.logs.Log(slog.LevelDebug, "turn: message refused", "client", addrOf(src), "service", "turn", "error", message)
}

// permit is pion's PermissionHandler for CreatePermission and ChannelBind;
// Send indications and ChannelData need one of those first.
func (s *Server) permit(client net.Addr, peer net.IP) bool {
	ip, ok := netip.AddrFromSlice(peer)
	if ok && !s.cfg.deny.denies(ip) {
		return true
	}
	// Not reported to the blacklist: WebRTC clients ask for permissions
	// for every candidate of the far end, link-local ones included.
	s.stats.deniedPeers.Add(1)
	s.logs.Log(slog.LevelWarn, "turn: relay to denied peer refused",
		"client", addrOf(client), "service", "turn", "peer", peer.String())
	return false
}
