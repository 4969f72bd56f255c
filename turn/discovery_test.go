package turn

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
	"github.com/gatehouse-pbx/gatehouse/proxy/proxytest"
)

// NAT behaviour discovery against real clients on loopback: the server's
// primary address is 127.0.0.1, its alternate 127.0.0.2 (both on lo).
// Nothing translates between them, so every client must find what an
// open Internet connection looks like: endpoint-independent mapping and
// filtering (RFC 5780), "Open" (RFC 3489).

// startDiscovery runs a server with turn.alternate_address 127.0.0.2.
func startDiscovery(t *testing.T, opts Options) *Server {
	t.Helper()
	cfg := baseConfig()
	cfg.AlternateAddress = "127.0.0.2"
	return startServer(t, cfg, opts)
}

// natdiscovery runs coturn's turnutils_natdiscovery against s.
func natdiscovery(t *testing.T, s *Server, flags ...string) string {
	t.Helper()
	bin := coturnTool(t, "turnutils_natdiscovery")
	args := append(flags, "-p", strconv.Itoa(int(s.Addr().Port())), s.Addr().Addr().String())
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("turnutils_natdiscovery %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func TestNATDiscoveryCoturn(t *testing.T) {
	s := startDiscovery(t, Options{})
	port := int(s.Addr().Port())
	for _, flags := range [][]string{
		{"-m", "-f"},
		{"-m", "-f", "-P"}, // PADDING
		{"-H"},             // hairpinning
	} {
		out := natdiscovery(t, s, flags...)
		for _, want := range map[string][]string{
			"-m": {"NAT with Endpoint Independent Mapping!"},
			"-f": {"NAT with Endpoint Independent Filtering!"},
			"-H": {"maybe a successful hairpinning"},
		}[flags[0]] {
			if !strings.Contains(out, want) {
				t.Errorf("%v: no %q in\n%s", flags, want, out)
			}
		}
		if flags[0] == "-m" && !strings.Contains(out, "NAT with Endpoint Independent Filtering!") {
			t.Errorf("%v: filtering not found endpoint-independent:\n%s", flags, out)
		}
		// Mapping test II is answered from the alternate address, the
		// filtering test from the alternate address and port.
		for _, want := range []string{
			"Response origin: : 127.0.0.2:" + strconv.Itoa(port),
			"Response origin: : 127.0.0.2:" + strconv.Itoa(port+1),
			"Other addr: : 127.0.0.2:" + strconv.Itoa(port+1),
		} {
			if flags[0] == "-m" && !strings.Contains(out, want) {
				t.Errorf("%v: no %q in\n%s", flags, want, out)
			}
		}
		if strings.Contains(strings.ToLower(out), "error") {
			t.Errorf("%v reports an error:\n%s", flags, out)
		}
	}
	if st := s.Stats(); st.ChangedBindings == 0 || st.Rejected != 0 || st.Malformed != 0 {
		t.Errorf("stats %+v: want changed bindings, nothing refused", st)
	}
}

// Without turn.alternate_address CHANGE-REQUEST gets a 420, so the client
// learns the server cannot tell it: no behaviour is claimed.
func TestNATDiscoveryCoturnWithoutAlternate(t *testing.T) {
	s := startServer(t, baseConfig(), Options{})
	out := natdiscovery(t, s, "-m", "-f")
	if strings.Contains(out, "NAT with") || strings.Contains(out, "Other addr") {
		t.Errorf("behaviour reported without an alternate address:\n%s", out)
	}
	if !strings.Contains(out, "UDP reflexive addr: 127.0.0.1:") {
		t.Errorf("mapped address not learnt:\n%s", out)
	}
	// A client that sends CHANGE-REQUEST all the same gets the 420 of
	// RFC 5780 §6.1 from the one socket there is.
	c := listenUDP(t, "127.0.0.1")
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest,
		stun.RawAttribute{Type: stun.AttrChangeRequest, Value: []byte{0, 0, 0, changeIP | changePort}}, stun.Fingerprint)
	resp, from, ok := udpExchange(t, c, s.Addr(), req.Raw)
	if !ok || from != s.Addr() {
		t.Fatalf("CHANGE-REQUEST: answered %v from %v", ok, from)
	}
	m := &stun.Message{Raw: resp}
	var ec stun.ErrorCodeAttribute
	var ua stun.UnknownAttributes
	if m.Decode() != nil || m.Type != stun.BindingError || ec.GetFrom(m) != nil || ec.Code != stun.CodeUnknownAttribute ||
		ua.GetFrom(m) != nil || len(ua) != 1 || ua[0] != stun.AttrChangeRequest {
		t.Errorf("CHANGE-REQUEST without an alternate address: %v %v %v", m, ec, ua)
	}
	if s.Stats().Rejected != 1 {
		t.Errorf("Rejected = %d, want 1", s.Stats().Rejected)
	}
}

// classicClient runs the RFC 3489 client of Debian's stun-client (Vovida's
// stun 0.97: 16-byte transaction IDs, no magic cookie; testdata/binding
// has what it sends) against s and returns its verbose output. Its exit
// status is the NAT type it found, not success.
func classicClient(t *testing.T, s *Server) string {
	t.Helper()
	bin := testpeer.Program(t, "stun", "stun-client")
	out, err := exec.Command(bin, s.Addr().String(), "-v").CombinedOutput()
	if _, exit := err.(*exec.ExitError); err != nil && !exit {
		t.Fatal(err)
	}
	return string(out)
}

var reTest = regexp.MustCompile(`(?m)^test (I|II|III|I\(2\)) = (\d)`)

func TestClassicSTUNClient(t *testing.T) {
	s := startDiscovery(t, Options{})
	out := classicClient(t, s)
	got := map[string]string{}
	for _, m := range reTest.FindAllStringSubmatch(out, -1) {
		got[m[1]] = m[2]
	}
	// All four tests of RFC 3489 §10.1 answered: I, II (change IP and
	// port), III (change port), I against CHANGED-ADDRESS.
	for _, test := range []string{"I", "II", "III", "I(2)"} {
		if got[test] != "1" {
			t.Errorf("test %s not answered", test)
		}
	}
	if !strings.Contains(out, "Primary: Open") {
		t.Errorf("NAT type not found open:\n%s", out)
	}
	port := int(s.Addr().Port())
	for _, want := range []string{
		"SourceAddress = 127.0.0.2:" + strconv.Itoa(port),   // test II
		"SourceAddress = 127.0.0.1:" + strconv.Itoa(port+1), // test III
		"ChangedAddress = 127.0.0.2:" + strconv.Itoa(port+1),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
	if st := s.Stats(); st.ClassicBindings < 4 || st.ChangedBindings < 2 {
		t.Errorf("stats %+v: want the client's cookie-less requests answered", st)
	}
}

func TestClassicSTUNClientWithoutAlternate(t *testing.T) {
	s := startServer(t, baseConfig(), Options{})
	out := classicClient(t, s)
	if strings.Contains(out, "Blocked") { // what it said when pion dropped its requests
		t.Errorf("test I not answered:\n%s", out)
	}
	if strings.Contains(out, "ChangedAddress") {
		t.Errorf("CHANGED-ADDRESS without an alternate address:\n%s", out)
	}
	// Test I (CHANGE-REQUEST without flags) is answered; the changes
	// are refused, not answered from the one socket there is.
	if st := s.Stats(); st.ClassicBindings == 0 || st.ChangedBindings != 0 || st.Rejected == 0 {
		t.Errorf("stats %+v", st)
	}
}

// udpExchange sends raw from a socket on local to dst and returns the
// reply and the address it came from; ok false when none came.
func udpExchange(t *testing.T, conn net.PacketConn, dst netip.AddrPort, raw []byte) ([]byte, netip.AddrPort, bool) {
	t.Helper()
	if _, err := conn.WriteTo(raw, net.UDPAddrFromAddrPort(dst)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, from, err := conn.ReadFrom(buf)
	if err != nil {
		return nil, netip.AddrPort{}, false
	}
	return buf[:n], from.(*net.UDPAddr).AddrPort(), true
}

func listenUDP(t *testing.T, ip string) net.PacketConn {
	t.Helper()
	c, err := net.ListenPacket("udp4", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// classicRequest is a fresh RFC 3489 Binding request with CHANGE-REQUEST flags.
func classicRequest(flags byte) []byte {
	b := []byte{0, 1, 0, 8}
	for i := range 16 {
		b = append(b, byte(time.Now().UnixNano()>>i)^byte(i*37))
	}
	return append(b, 0, 3, 0, 4, 0, 0, 0, flags)
}

func TestDiscoverySockets(t *testing.T) {
	s := startDiscovery(t, Options{})
	if len(s.addrs) != 4 {
		t.Fatalf("sockets %v", s.addrs)
	}
	c := listenUDP(t, "127.0.0.1")
	for at, dst := range s.addrs {
		for _, flags := range []byte{0, changeIP, changePort, changeIP | changePort} {
			req := classicRequest(flags)
			resp, from, ok := udpExchange(t, c, dst, req)
			if !ok {
				t.Fatalf("socket %v, flags %#x: no answer", dst, flags)
			}
			want := socket(at)
			if flags&changeIP != 0 {
				want ^= altIP
			}
			if flags&changePort != 0 {
				want ^= altPort
			}
			if from != s.addrs[want] {
				t.Errorf("request to %v with flags %#x answered from %v, want %v", dst, flags, from, s.addrs[want])
			}
			if !bytes.Equal(resp[4:20], req[4:20]) || binary.BigEndian.Uint16(resp) != 0x0101 {
				t.Errorf("response %x does not answer %x", resp, req)
			}
		}
	}
}

// TURN stays on the primary socket: the others answer Binding requests
// only, and the blacklist and the rate limit cover all four.
func TestDiscoverySocketsPolicy(t *testing.T) {
	guard := &proxytest.Guard{}
	guard.Block(netip.MustParseAddr("127.0.0.3"))
	// One socket on the primary address: the checks below rely on a
	// socket reading its datagrams in order, and with several
	// (SO_REUSEPORT shards, TestUDPShards) two clients may land on two.
	s := startDiscovery(t, Options{Guard: guard, UDPSockets: 1})

	// An allocation works on the primary address.
	client := dialClient(t, s, "udp", "127.0.0.1", "phones", "pw")
	relay, err := client.Allocate()
	if err != nil {
		t.Fatalf("Allocate with an alternate address configured: %v", err)
	}
	relay.Close()
	// pion's client reads the Binding response (XOR-MAPPED-ADDRESS).
	if mapped, err := client.SendBindingRequest(); err != nil || !mapped.(*net.UDPAddr).IP.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("pion client's Binding: %v, %v", mapped, err)
	}
	// An Allocate to another socket gets nothing.
	alloc := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedUDP).Raw
	c := listenUDP(t, "127.0.0.4")
	other := listenUDP(t, "127.0.0.6")
	// unanswered sends raw from conn to dst, then has other's request
	// answered there: the socket reads in order, so by then raw was
	// handled, and a reply to it would be waiting.
	unanswered := func(conn net.PacketConn, dst netip.AddrPort, raw []byte) bool {
		t.Helper()
		conn.WriteTo(raw, net.UDPAddrFromAddrPort(dst))
		if _, _, ok := udpExchange(t, other, dst, classicRequest(0)); !ok {
			t.Fatalf("%v stopped answering", dst)
		}
		conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		_, _, err := conn.ReadFrom(make([]byte, 2048))
		return err != nil
	}
	for _, dst := range s.addrs[1:] {
		if !unanswered(c, dst, alloc) {
			t.Errorf("Allocate answered on %v", dst)
		}
	}

	blocked := listenUDP(t, "127.0.0.3")
	for _, dst := range s.addrs {
		// Without the change: its reply would come from dst, after
		// other's (answered from dst too).
		if !unanswered(blocked, dst, classicRequest(0)) {
			t.Errorf("blocked client answered on %v", dst)
		}
	}
	if got := s.Stats().Blocked; got < 4 {
		t.Errorf("Blocked = %d, want 4", got)
	}

	// One budget across the four sockets: the burst spent on the primary
	// one, the others drop the client's requests too. Sent in batches the
	// socket buffers hold; another client's answered request on the same
	// socket marks each batch as read. The bucket refills at requestRate
	// meanwhile: the margins allow for seconds of that.
	flood := listenUDP(t, "127.0.0.5")
	batch := func(dst netip.AddrPort, n int) {
		t.Helper()
		for range n {
			flood.WriteTo(classicRequest(0), net.UDPAddrFromAddrPort(dst))
		}
		if _, _, ok := udpExchange(t, c, dst, classicRequest(0)); !ok {
			t.Fatalf("%v stopped answering", dst)
		}
	}
	for range 4 {
		batch(s.addrs[primary], requestBurst/2)
	}
	before := s.Stats().Throttled
	for _, dst := range s.addrs[1:] {
		batch(dst, 100)
	}
	after := s.Stats().Throttled
	if before == 0 || after-before < 200 {
		t.Errorf("throttled %d on the primary socket, then %d of 300 on the others: the limit does not cover them", before, after-before)
	}
}

// Over TCP a Binding request is answered by the same code, with
// RESPONSE-ORIGIN; CHANGE-REQUEST cannot be honoured on a connection.
func TestBindingOverTCP(t *testing.T) {
	s := startDiscovery(t, Options{})
	conn, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	exchange := func(setters ...stun.Setter) *stun.Message {
		t.Helper()
		req := stun.MustBuild(append([]stun.Setter{stun.TransactionID, stun.BindingRequest}, setters...)...)
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write(req.Raw); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2048)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		m := &stun.Message{Raw: buf[:n]}
		if err := m.Decode(); err != nil || m.TransactionID != req.TransactionID {
			t.Fatalf("response %x: %v", buf[:n], err)
		}
		return m
	}
	m := exchange(stun.Fingerprint)
	var origin stun.ResponseOrigin
	if m.Type != stun.BindingSuccess || origin.GetFrom(m) != nil || origin.Port != int(s.Addr().Port()) || m.Contains(stun.AttrOtherAddress) {
		t.Errorf("TCP binding: %v", m)
	}
	m = exchange(stun.RawAttribute{Type: stun.AttrChangeRequest, Value: []byte{0, 0, 0, changeIP}}, stun.Fingerprint)
	var ec stun.ErrorCodeAttribute
	if m.Type != stun.BindingError || ec.GetFrom(m) != nil || ec.Code != stun.CodeUnknownAttribute {
		t.Errorf("CHANGE-REQUEST over TCP: %v %v", m, ec)
	}
}

func TestAlternateAddressSettings(t *testing.T) {
	for _, tc := range []struct {
		listen, alt string
		ok          bool
	}{
		{"127.0.0.1:3478", "127.0.0.2", true},
		{":3478", "127.0.0.2", false},          // wildcard primary
		{"0.0.0.0:3478", "127.0.0.2", false},   // wildcard primary
		{"127.0.0.1:3478", "127.0.0.1", false}, // the same address
		{"127.0.0.1:3478", "::1", false},       // another family
		{"127.0.0.1:3478", "host", false},
	} {
		cfg := baseConfig()
		cfg.Listen, cfg.AlternateAddress = tc.listen, tc.alt
		if _, err := newSettings(cfg, nil, nil); (err == nil) != tc.ok {
			t.Errorf("listen %s, alternate %s: %v", tc.listen, tc.alt, err)
		}
	}
	// An address the appliance does not have cannot be bound.
	cfg := baseConfig()
	cfg.AlternateAddress = "192.0.2.1"
	if s, err := New(cfg, Options{Logger: discardLogger()}); err == nil {
		s.Close()
		t.Error("an alternate address that is not local was accepted")
	}
}
