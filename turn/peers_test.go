package turn

import (
	"net/netip"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
)

func TestDenyList(t *testing.T) {
	own := netip.MustParseAddr("192.0.2.10")
	defaults := newDenyList(configs.DefaultDenyPeers, own)
	explicit := newDenyList([]configs.Prefix{
		{Prefix: netip.MustParsePrefix("10.0.0.0/8")},
		{Prefix: netip.MustParsePrefix("::ffff:172.16.0.0/108")}, // written mapped: must still cover 172.16.0.0/12
	})
	none := newDenyList([]configs.Prefix{})

	tests := []struct {
		peer                    string
		defaults, explicit, any bool // denied by the default list, the explicit one, an empty one
	}{
		// The addresses coturn advisories were about.
		{"127.0.0.1", true, false, false},
		{"::ffff:127.0.0.1", true, false, false},
		{"0.0.0.0", true, true, true}, // Linux delivers it to loopback
		{"::", true, true, true},
		{"::ffff:0.0.0.0", true, true, true},
		{"0.1.2.3", true, true, true},
		{"::1", true, true, true},           // ::/96 embeds 0.0.0.1
		{"::127.0.0.1", true, false, false}, // deprecated IPv4-compatible form
		{"127.255.255.254", true, false, false},
		{"169.254.169.254", true, false, false}, // cloud metadata service
		{"::ffff:169.254.169.254", true, false, false},
		{"fe80::1", true, false, false},
		{"fe80::1%eth0", true, false, false},    // zones do not hide an address
		{"64:ff9b::7f00:1", true, false, false}, // NAT64 of 127.0.0.1
		{"2002:7f00:1::1", true, false, false},  // 6to4 of 127.0.0.1
		{"192.0.2.10", true, false, false},      // the appliance itself
		{"::ffff:192.0.2.10", true, false, false},
		{"224.0.0.1", true, true, true},
		{"255.255.255.255", true, true, true},
		{"ff02::1", true, true, true},
		// The explicit list, however written.
		{"10.1.2.3", false, true, false},
		{"::ffff:10.1.2.3", false, true, false},
		{"172.20.0.1", false, true, false},
		{"64:ff9b::a01:203", false, true, false}, // NAT64 of 10.1.2.3
		// Ordinary peers.
		{"198.51.100.7", false, false, false},
		{"::ffff:198.51.100.7", false, false, false},
		{"2001:db8::7", false, false, false},
		{"192.0.2.11", false, false, false},
	}
	for _, tt := range tests {
		ip := netip.MustParseAddr(tt.peer)
		if got := defaults.denies(ip); got != tt.defaults {
			t.Errorf("default list: denies(%s) = %v, want %v", tt.peer, got, tt.defaults)
		}
		if got := explicit.denies(ip); got != tt.explicit {
			t.Errorf("explicit list: denies(%s) = %v, want %v", tt.peer, got, tt.explicit)
		}
		if got := none.denies(ip); got != tt.any {
			t.Errorf("empty list: denies(%s) = %v, want %v", tt.peer, got, tt.any)
		}
	}
	if !defaults.denies(netip.Addr{}) {
		t.Error("an invalid address must be denied")
	}
}

// pion hands the permission handler a net.IP of 4 or 16 bytes; both forms
// of a denied address must be refused.
func TestPermitNormalisesNetIP(t *testing.T) {
	s := &Server{cfg: settings{deny: newDenyList(configs.DefaultDenyPeers)}, logs: newRateLog(discardLogger(), time.Now)}
	for _, peer := range [][]byte{
		{127, 0, 0, 1},
		{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1},
		{0, 0, 0, 0},
		make([]byte, 16),
		{1, 2, 3}, // not an address at all
	} {
		if s.permit(nil, peer) {
			t.Errorf("permit(%v) = true, want false", peer)
		}
	}
	if !s.permit(nil, []byte{198, 51, 100, 7}) {
		t.Error("permit(198.51.100.7) = false, want true")
	}
	if got := s.Stats().DeniedPeers; got != 5 {
		t.Errorf("DeniedPeers = %d, want 5", got)
	}
}
