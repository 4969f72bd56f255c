package turn

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"github.com/pion/turn/v4"

	"github.com/gatehouse-pbx/gatehouse/blacklist"
	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/proxy/proxytest"
)

func TestRelay(t *testing.T) {
	for _, network := range []string{"udp", "tcp", "tls"} {
		t.Run(network, func(t *testing.T) {
			cfg := baseConfig()
			cfg.TLSListen = "127.0.0.1:0"
			guard := &proxytest.Guard{}
			s := startServer(t, cfg, Options{Guard: guard, Certificates: []tls.Certificate{selfSigned(t)}})
			peer := echoPeer(t)

			client := dialClient(t, s, network, "127.0.0.1", "phones", "pw")
			relay, err := client.Allocate()
			if err != nil {
				t.Fatalf("Allocate: %v", err)
			}
			defer relay.Close()
			if got := relay.LocalAddr().(*net.UDPAddr); !got.IP.Equal(net.IPv4(127, 0, 0, 1)) ||
				got.Port < int(DefaultRelayPorts.Min) {
				t.Errorf("relay address %v, want 127.0.0.1 in %v", got, DefaultRelayPorts)
			}
			const n = 20
			roundTrips(t, relay, peer, n)

			st := s.Stats()
			if st.AllocationsActive != 1 || st.Allocations != 1 {
				t.Errorf("allocations: %d active, %d created; want 1, 1", st.AllocationsActive, st.Allocations)
			}
			if st.RelayedPackets < 2*n || st.RelayedBytes < 2*n*5 {
				t.Errorf("relayed %d packets, %d bytes; want at least %d, %d", st.RelayedPackets, st.RelayedBytes, 2*n, 2*n*5)
			}
			// The 401 challenge before the authenticated Allocate is ordinary.
			if st.AuthFailures != 0 || len(guard.Events()) != 0 {
				t.Errorf("auth failures %d, reports %v; want none", st.AuthFailures, guard.Events())
			}
		})
	}
}

func TestSTUNOnly(t *testing.T) {
	cfg := baseConfig()
	cfg.Accounts = nil
	s := startServer(t, cfg, Options{})
	if !binds(t, s, "127.0.0.1") {
		t.Fatal("binding request not answered")
	}
	client := dialClient(t, s, "udp", "127.0.0.1", "phones", "pw")
	if _, err := client.Allocate(); err == nil {
		t.Fatal("allocation succeeded on a STUN-only server")
	}
	if st := s.Stats(); st.Allocations != 0 {
		t.Errorf("%d allocations on a STUN-only server", st.Allocations)
	}
}

func TestDenyPeers(t *testing.T) {
	cfg := baseConfig()
	cfg.DenyPeers = nil // the default list
	s := startServer(t, cfg, Options{})
	peer := echoPeer(t)

	client := dialClient(t, s, "udp", "127.0.0.1", "phones", "pw")
	relay, err := client.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	if _, err := relay.WriteTo([]byte("x"), peer); err == nil {
		t.Error("relay to a loopback peer allowed by the default deny list")
	}

	// Spellings pion's client would not produce, sent as CreatePermission
	// and ChannelBind with hand-built XOR-PEER-ADDRESS attributes.
	raw := newRawClient(t, s, "127.0.0.1", "phones", "pw")
	if resp := raw.authed(stun.MethodAllocate, requestedUDP); refused(resp) {
		t.Fatalf("Allocate: %v", resp)
	}
	for _, p := range []string{"127.0.0.1", "::ffff:127.0.0.1", "0.0.0.0", "::", "::ffff:0.0.0.0", "169.254.169.254", "::127.0.0.1"} {
		addr := peerAddress(netip.MustParseAddr(p), peer.Port)
		if resp := raw.authed(stun.MethodCreatePermission, addr); !refused(resp) {
			t.Errorf("CreatePermission for %s succeeded", p)
		}
		channel := stun.RawAttribute{Type: stun.AttrChannelNumber, Value: []byte{0x40, 0x01, 0, 0}}
		if resp := raw.authed(stun.MethodChannelBind, channel, addr); !refused(resp) {
			t.Errorf("ChannelBind for %s succeeded", p)
		}
	}
	if got := s.Stats().DeniedPeers; got < 14 {
		t.Errorf("DeniedPeers = %d, want at least 14", got)
	}
	if resp := raw.authed(stun.MethodCreatePermission, peerAddress(netip.MustParseAddr("198.51.100.7"), 5000)); refused(resp) {
		t.Errorf("CreatePermission for an ordinary peer refused: %v", resp)
	}
}

// peerAddress is an XOR-PEER-ADDRESS written in the family of ip's own
// form, so ::ffff:127.0.0.1 travels as a 16-byte IPv6 address.
func peerAddress(ip netip.Addr, port int) stun.Setter {
	return setterFunc(func(m *stun.Message) error {
		b := ip.AsSlice()
		v := make([]byte, 4, 4+len(b))
		v[1] = 1
		if len(b) == 16 {
			v[1] = 2
		}
		binary.BigEndian.PutUint16(v[2:], uint16(port)^0x2112)
		xor := append(binary.BigEndian.AppendUint32(nil, magicCookie), m.TransactionID[:]...)
		for i := range b {
			v = append(v, b[i]^xor[i])
		}
		m.Add(stun.AttrXORPeerAddress, v)
		return nil
	})
}

func TestAuthFailures(t *testing.T) {
	cfg := baseConfig()
	guard := &proxytest.Guard{}
	s := startServer(t, cfg, Options{Guard: guard})

	for _, c := range []struct{ user, pass, reason string }{
		{"phones", "wrong", reasonBadPassword},
		{"nobody", "pw", reasonUnknownUser},
	} {
		client := dialClient(t, s, "udp", "127.0.0.3", c.user, c.pass)
		if _, err := client.Allocate(); err == nil {
			t.Fatalf("Allocate as %s/%s succeeded", c.user, c.pass)
		}
	}
	want := []string{reasonBadPassword, reasonUnknownUser}
	got := guard.Events()
	if len(got) != len(want) {
		t.Fatalf("reports %v, want reasons %v", got, want)
	}
	for i, ev := range got {
		if ev.Reason != want[i] || ev.Type != "turn" || ev.Client != netip.MustParseAddr("127.0.0.3") || ev.Time.IsZero() {
			t.Errorf("report %d = %+v, want reason %q from 127.0.0.3", i, ev, want[i])
		}
	}
	if st := s.Stats(); st.AuthFailures != 2 || st.AllocationsActive != 0 {
		t.Errorf("auth failures %d, allocations %d; want 2, 0", st.AuthFailures, st.AllocationsActive)
	}
}

func TestRESTCredentials(t *testing.T) {
	cfg := baseConfig()
	cfg.Accounts = nil
	cfg.Secret = "s3cret"
	guard := &proxytest.Guard{}
	s := startServer(t, cfg, Options{Guard: guard})
	peer := echoPeer(t)

	user, pass, err := turn.GenerateLongTermTURNRESTCredentials("s3cret", "alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	relay, err := dialClient(t, s, "udp", "127.0.0.1", user, pass).Allocate()
	if err != nil {
		t.Fatalf("Allocate with REST credentials: %v", err)
	}
	defer relay.Close()
	roundTrips(t, relay, peer, 3)

	user, pass, _ = turn.GenerateLongTermTURNRESTCredentials("s3cret", "alice", -time.Minute)
	if _, err := dialClient(t, s, "udp", "127.0.0.1", user, pass).Allocate(); err == nil {
		t.Fatal("Allocate with expired REST credentials succeeded")
	}
	if r := guard.Events(); len(r) != 1 || r[0].Reason != reasonExpired {
		t.Errorf("reports %v, want one %q", r, reasonExpired)
	}
}

func TestBlockedSource(t *testing.T) {
	blocked := netip.MustParseAddr("127.0.0.2")
	cfg := baseConfig()
	guard := &proxytest.Guard{}
	guard.Block(blocked)
	s := startServer(t, cfg, Options{Guard: guard})

	if binds(t, s, "127.0.0.2") {
		t.Error("binding request from a blocked address answered")
	}
	c, err := net.DialTCP("tcp", &net.TCPAddr{IP: blocked.AsSlice()}, net.TCPAddrFromAddrPort(s.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, errTimeoutOf(err)) {
		t.Errorf("TCP connection from a blocked address kept open: read %d, %v", n, err)
	}

	if !binds(t, s, "127.0.0.1") {
		t.Error("binding request from an unblocked address not answered")
	}
	if got := s.Stats().Blocked; got < 2 {
		t.Errorf("Blocked = %d, want at least 2", got)
	}
}

// errTimeoutOf returns err when it is a timeout, so errors.Is matches only those.
func errTimeoutOf(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return err
	}
	return errors.New("not a timeout")
}

// GHSA-34rh-wp3j-6cxc: pion/stun before v3 panicked on a short
// XOR-PEER-ADDRESS, which any authenticated client can send in a Send
// indication. The server must drop such messages and keep serving.
func TestMalformedSendIndication(t *testing.T) {
	s := startServer(t, baseConfig(), Options{})
	peer := echoPeer(t)

	raw := newRawClient(t, s, "127.0.0.1", "phones", "pw")
	if resp := raw.authed(stun.MethodAllocate, requestedUDP); refused(resp) {
		t.Fatalf("Allocate: %v", resp)
	}
	if resp := raw.authed(stun.MethodCreatePermission, peerAddress(netip.MustParseAddr("127.0.0.1"), peer.Port)); refused(resp) {
		t.Fatalf("CreatePermission: %v", resp)
	}
	for _, v := range [][]byte{
		{0x00, 0x02},                         // family IPv6, nothing else
		{0x00, 0x02, 0x12, 0x34},             // family and port, no address
		{0x00, 0x02, 0x12, 0x34, 1, 2, 3, 4}, // IPv6 family, IPv4-sized address: the advisory's case
		{0x00, 0x01, 0x12, 0x34, 1, 2},       // IPv4 family, 2 address bytes
		{0x00, 0x03, 0x12, 0x34, 1, 2, 3, 4}, // unknown family
	} {
		send := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication),
			stun.RawAttribute{Type: stun.AttrData, Value: []byte("media")},
			stun.RawAttribute{Type: stun.AttrXORPeerAddress, Value: v})
		raw.send(send.Raw)
	}

	// Still serving: binding answered, and a well-formed Send indication
	// from the same allocation reaches the peer and comes back.
	if !binds(t, s, "127.0.0.1") {
		t.Fatal("server stopped answering after malformed Send indications")
	}
	send := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication),
		stun.RawAttribute{Type: stun.AttrData, Value: []byte("media")},
		peerAddress(netip.MustParseAddr("127.0.0.1"), peer.Port))
	raw.send(send.Raw)
	buf := make([]byte, 1500)
	raw.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, _, err := raw.conn.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no Data indication after a good Send indication: %v", err)
	}
	data := &stun.Message{Raw: buf[:n]}
	if err := data.Decode(); err != nil || data.Type != stun.NewType(stun.MethodData, stun.ClassIndication) {
		t.Fatalf("got %v (%v), want a Data indication", data, err)
	}
	if v, _ := data.Get(stun.AttrData); string(v) != "media" {
		t.Errorf("Data indication carries %q, want %q", v, "media")
	}
	if got := s.Stats().Rejected; got < 5 {
		t.Errorf("Rejected = %d, want at least 5", got)
	}
}

func TestBadInput(t *testing.T) {
	var logs logBuffer
	s := startServer(t, baseConfig(), Options{Logger: newBufferLogger(&logs, slog.LevelDebug)})

	raw := newRawClient(t, s, "127.0.0.4", "phones", "pw")
	header := func(typ, length uint16) []byte {
		b := binary.BigEndian.AppendUint16(nil, typ)
		b = binary.BigEndian.AppendUint16(b, length)
		b = binary.BigEndian.AppendUint32(b, magicCookie)
		return append(b, bytes.Repeat([]byte{7}, 12)...)
	}
	for _, b := range [][]byte{
		{},                                      // empty datagram
		[]byte("GET / HTTP/1.1\r\n\r\n"),        // not STUN at all
		header(0x0001, 0)[:19],                  // truncated header
		header(0x0001, 400),                     // length beyond the datagram
		append(header(0x0001, 4), 0, 6, 0, 200), // attribute longer than the message
		header(0x0fff, 0),                       // unknown method
		append(header(0x0001, 0), make([]byte, 4000)...), // oversized datagram
		{0x40, 0x00, 0xff, 0xff, 1, 2, 3, 4},             // ChannelData claiming 64 KiB, no allocation
		stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedUDP,
			stun.RawAttribute{Type: stun.AttrUsername, Value: bytes.Repeat([]byte{'u'}, 1200)},
			stun.RawAttribute{Type: stun.AttrRealm, Value: []byte(testRealm)},
			stun.RawAttribute{Type: stun.AttrNonce, Value: []byte("x")},
			stun.NewShortTermIntegrity("pw")).Raw, // oversized USERNAME
	} {
		raw.send(b)
	}
	if !binds(t, s, "127.0.0.4") {
		t.Fatal("server stopped answering after malformed datagrams")
	}

	// A stream that breaks STUN framing is closed.
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")) // text would pass for ChannelData
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, errTimeoutOf(err)) {
		t.Errorf("garbage stream kept open: %v", err)
	}

	// A flood of unauthenticated Allocates is cut at the rate limit.
	flood := newRawClient(t, s, "127.0.0.5", "", "")
	const requests = 3 * requestBurst
	start := time.Now()
	for range requests {
		flood.send(stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedUDP).Raw)
	}
	// The bucket refills while the flood is sent and read.
	allowed := requestBurst + int(requestRate*time.Since(start).Seconds()) + 1
	answers := 0
	buf := make([]byte, 1500)
	for {
		flood.conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		if _, _, err := flood.conn.ReadFrom(buf); err != nil {
			break
		}
		answers++
	}
	if answers > allowed+requestRate || answers == 0 {
		t.Errorf("%d of %d flooded requests answered, want about %d", answers, requests, allowed)
	}
	if !binds(t, s, "127.0.0.4") {
		t.Fatal("other clients starved by the flood")
	}

	st := s.Stats()
	if st.Throttled == 0 || st.Malformed < 2 || st.Rejected < 5 {
		t.Errorf("stats %+v: want throttled requests, at least 2 malformed and 5 rejected", st)
	}
	if n := logs.count("requests over the rate limit"); n == 0 || n > logBurst {
		t.Errorf("%d log lines for the flood, want 1 to %d", n, logBurst)
	}
	if n := strings.Count(logs.String(), "\n"); n > 200 {
		t.Errorf("%d log lines at debug level for a few dozen bad messages and a flood", n)
	}
}

func TestQuotas(t *testing.T) {
	cfg := baseConfig()
	cfg.MaxAllocationsPerUser = 2
	cfg.MaxAllocations = 3
	s := startServer(t, cfg, Options{})

	allocate := func(user, pass string) error {
		relay, err := dialClient(t, s, "udp", "127.0.0.1", user, pass).Allocate()
		if err == nil {
			t.Cleanup(func() { relay.Close() })
		}
		return err
	}
	for i := range 2 {
		if err := allocate("phones", "pw"); err != nil {
			t.Fatalf("allocation %d within the per-user quota: %v", i, err)
		}
	}
	if err := allocate("phones", "pw"); err == nil {
		t.Error("allocation over the per-user quota succeeded")
	}
	if err := allocate("fax", "pw2"); err != nil {
		t.Errorf("another user's allocation refused: %v", err)
	}
	if err := allocate("fax", "pw2"); err == nil {
		t.Error("allocation over the total quota succeeded")
	}
	if st := s.Stats(); st.AllocationsActive != 3 || st.QuotaRejections != 2 {
		t.Errorf("%d allocations, %d quota rejections; want 3, 2", st.AllocationsActive, st.QuotaRejections)
	}
}

func TestLifetimeCap(t *testing.T) {
	cfg := baseConfig()
	cfg.MaxLifetime = 3 * time.Minute
	s := startServer(t, cfg, Options{})

	granted := func(m *stun.Message) time.Duration {
		t.Helper()
		if refused(m) {
			t.Fatalf("request refused: %v", m)
		}
		v, err := m.Get(stun.AttrLifetime)
		if err != nil || len(v) != 4 {
			t.Fatalf("no LIFETIME in %v", m)
		}
		return time.Duration(binary.BigEndian.Uint32(v)) * time.Second
	}
	raw := newRawClient(t, s, "127.0.0.1", "phones", "pw")
	if got := granted(raw.authed(stun.MethodAllocate, requestedUDP, lifetimeAttr(time.Hour))); got != 3*time.Minute {
		t.Errorf("Allocate asking 1h granted %v, want the 3m cap", got)
	}
	if got := granted(raw.authed(stun.MethodRefresh, lifetimeAttr(2*time.Minute))); got != 2*time.Minute {
		t.Errorf("Refresh asking 2m granted %v", got)
	}
	if got := granted(raw.authed(stun.MethodRefresh)); got != 3*time.Minute {
		t.Errorf("Refresh asking the default granted %v, want the 3m cap", got)
	}
	if got := granted(raw.authed(stun.MethodRefresh, lifetimeAttr(0))); got != 0 {
		t.Errorf("Refresh deleting the allocation granted %v", got)
	}
	if st := s.Stats(); st.AllocationsActive != 0 || st.Allocations != 1 {
		t.Errorf("after deletion: %d active of %d; want 0 of 1", st.AllocationsActive, st.Allocations)
	}
}

func TestClose(t *testing.T) {
	cfg := baseConfig()
	cfg.TLSListen = "127.0.0.1:0"
	s, err := New(cfg, Options{Logger: discardLogger(), Certificates: []tls.Certificate{selfSigned(t)}})
	if err != nil {
		t.Fatal(err)
	}
	peer := echoPeer(t)
	var relays []net.Addr
	for _, network := range []string{"udp", "tcp", "tls"} {
		relay, err := dialClient(t, s, network, "127.0.0.1", "phones", "pw").Allocate()
		if err != nil {
			t.Fatal(err)
		}
		roundTrips(t, relay, peer, 1)
		relays = append(relays, relay.LocalAddr())
	}
	// An idle connection that never sent a frame.
	idle, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()

	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// Everything pion was handed is closed: the ports are free again.
	for _, a := range relays {
		c, err := net.ListenPacket("udp4", a.String())
		if err != nil {
			t.Errorf("relay %v still open after Close: %v", a, err)
			continue
		}
		c.Close()
	}
	for _, l := range []func() (func() error, error){
		func() (func() error, error) {
			c, err := net.ListenPacket("udp", s.Addr().String())
			return closer(c, err)
		},
		func() (func() error, error) { c, err := net.Listen("tcp", s.Addr().String()); return closer(c, err) },
		func() (func() error, error) { c, err := net.Listen("tcp", s.TLSAddr().String()); return closer(c, err) },
	} {
		if c, err := l(); err != nil {
			t.Errorf("listener still open after Close: %v", err)
		} else {
			c()
		}
	}
	idle.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); err == nil || errors.Is(err, errTimeoutOf(err)) {
		t.Errorf("idle connection survived Close: %v", err)
	}
}

func closer[T interface{ Close() error }](c T, err error) (func() error, error) {
	if err != nil {
		return nil, err
	}
	return c.Close, nil
}

func TestNewRefusesBadConfig(t *testing.T) {
	tests := []struct {
		name string
		edit func(*configs.TURN)
		want string
	}{
		{"no listen", func(c *configs.TURN) { c.Listen = "" }, "turn.listen"},
		{"tls without certificates", func(c *configs.TURN) { c.TLSListen = "127.0.0.1:0" }, "turn.tls_listen"},
		{"reversed relay ports", func(c *configs.TURN) { c.RelayPorts = configs.PortRange{Min: 50000, Max: 40000} }, "turn.relay_ports"},
		{"lifetime too short", func(c *configs.TURN) { c.MaxLifetime = 10 * time.Second }, "turn.max_lifetime"},
		{"lifetime beyond pion's", func(c *configs.TURN) { c.MaxLifetime = 2 * time.Hour }, "turn.max_lifetime"},
		{"ipv6 relay", func(c *configs.TURN) { c.RelayAddress = "2001:db8::1" }, "turn.relay_address"},
		{"bad relay", func(c *configs.TURN) { c.RelayAddress = "turn.example.com" }, "turn.relay_address"},
		{"no relay address", func(c *configs.TURN) { c.Listen, c.RelayAddress = ":0", "" }, "turn.relay_address"},
		{"duplicate account", func(c *configs.TURN) { c.Accounts = append(c.Accounts, c.Accounts[0]) }, "turn.accounts[2]"},
		{"account without password", func(c *configs.TURN) { c.Accounts[0].Password = "" }, "turn.accounts[0]"},
		{"negative quota", func(c *configs.TURN) { c.MaxAllocations = -1 }, "turn.max_allocations"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig()
			tt.edit(&cfg)
			s, err := New(cfg, Options{Logger: discardLogger()})
			if err == nil {
				s.Close()
				t.Fatal("New succeeded")
			}
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want ErrConfig naming %s", err, tt.want)
			}
		})
	}
}

func TestDefaultSettings(t *testing.T) {
	own := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("192.0.2.10")}
	cfg := configs.TURN{Listen: "127.0.0.1:3478", Accounts: []configs.Account{{User: "u", Password: "p"}}}
	st, err := newSettings(cfg, nil, own)
	if err != nil {
		t.Fatal(err)
	}
	if st.realm != DefaultRealm || st.relayPorts != DefaultRelayPorts || st.maxAllocs != DefaultMaxAllocations ||
		st.maxPerUser != DefaultMaxAllocationsPerUser || st.maxLifetime != DefaultMaxLifetime {
		t.Errorf("defaults not applied: %+v", st)
	}
	if st.relayIP != netip.MustParseAddr("127.0.0.1") || st.relayBind != "127.0.0.1" {
		t.Errorf("relay %v bound to %s, want the listen address", st.relayIP, st.relayBind)
	}
	if !st.deny.denies(netip.MustParseAddr("192.0.2.10")) {
		t.Error("the default deny list misses the appliance's own address")
	}
	// configs fills in DefaultDenyPeers for an absent key: the same list.
	cfg.DenyPeers = append([]configs.Prefix(nil), configs.DefaultDenyPeers...)
	if st, _ := newSettings(cfg, nil, own); !st.deny.denies(netip.MustParseAddr("192.0.2.10")) {
		t.Error("DefaultDenyPeers as loaded misses the appliance's own address")
	}
	// Behind NAT: the public relay address is offered, the listen address bound.
	cfg.RelayAddress = "203.0.113.5"
	if st, _ := newSettings(cfg, nil, own); st.relayBind != "127.0.0.1" || st.relayIP != netip.MustParseAddr("203.0.113.5") {
		t.Errorf("NAT relay: offered %v, bound %s", st.relayIP, st.relayBind)
	}
}

var _ Guard = (*blacklist.List)(nil)
