package h323

// Tests across the real proxy: phones (this package's vectors, written on
// real sockets) talk through proxy.Server, with Sniffer plugged in for h323
// and h323s and the real blacklist as its Guard, to a recording PBX with a
// plain and a TLS port.

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
	"github.com/gatehouse-pbx/gatehouse/proxy"
	"github.com/gatehouse-pbx/gatehouse/proxy/proxytest"
)

// pbx is an H.323 target: it records the bytes each connection sends and
// answers every tunnelled GRQ or RRQ with an RCF, or with an RRJ
// (securityDenial) when its aliases include one in reject.
type pbx struct {
	ln     net.Listener
	reject string
	wg     sync.WaitGroup

	mu    sync.Mutex // guards the fields below
	got   [][]byte   // by connection, in order of accept
	conns []net.Conn
}

func startPBX(t *testing.T, ln net.Listener, reject string) *pbx {
	p := &pbx{ln: ln, reject: reject}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			i := len(p.got)
			p.got = append(p.got, nil)
			p.conns = append(p.conns, c)
			p.mu.Unlock()
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				defer c.Close()
				p.serve(c, i)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *pbx) serve(c net.Conn, i int) {
	var buf []byte
	chunk := make([]byte, 4096)
	for {
		n, err := c.Read(chunk)
		p.mu.Lock()
		p.got[i] = append(p.got[i], chunk[:n]...)
		p.mu.Unlock()
		buf = append(buf, chunk[:n]...)
		for {
			size, ferr := Frame(buf)
			if ferr != nil || size > len(buf) {
				break
			}
			if reply := p.answer(buf[:size]); reply != nil {
				c.Write(reply)
			}
			buf = buf[size:]
		}
		if err != nil {
			return
		}
	}
}

func (p *pbx) answer(msg []byte) []byte {
	ras, err := tunnelledRAS(msg)
	if err != nil {
		return nil
	}
	for _, raw := range ras {
		m, err := decodeRAS(raw)
		if err != nil || !m.registration() {
			continue
		}
		for _, a := range m.aliases {
			if p.reject != "" && a.equalFold(p.reject) {
				return facility(facilityOptions{}, rrj("example.com", 3, true))
			}
		}
		return facility(facilityOptions{}, rcf("example.com", h323ID("alice")))
	}
	return nil
}

// received returns what connection i sent, once it has sent n bytes.
func (p *pbx) received(t *testing.T, i, n int) []byte {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		p.mu.Lock()
		var got []byte
		if i < len(p.got) {
			got = slices.Clone(p.got[i])
		}
		p.mu.Unlock()
		if len(got) >= n {
			return got
		}
	}
	t.Fatalf("the PBX did not receive %d bytes on connection %d", n, i)
	return nil
}

func (p *pbx) connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.got)
}

// guard records the events for the test and passes them on to the real
// blacklist, its Next.
type guard struct{ *proxytest.Guard }

// waitEvents waits until there are as many events as want, and checks
// they are want, in order.
func (g guard) waitEvents(t *testing.T, want ...string) {
	t.Helper()
	var got []string
	for _, ev := range g.WaitEvents(len(want)) {
		got = append(got, fmt.Sprintf("%s %s %s: %s", ev.Client, ev.Type, ev.Service, ev.Reason))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("events:\n got %q\nwant %q", got, want)
	}
}

// testbed is gatehouse in front of a PBX with a plain and a TLS port.
type testbed struct {
	plain, secure *pbx
	h323, h323s   string // gatehouse's listeners
	ca            *testpki.CA
	guard         guard
}

func startTestbed(t *testing.T, reject string, threshold int) *testbed {
	t.Helper()
	ca := testpki.NewCA(t, "phones")
	plainLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pbxCert := ca.Server("127.0.0.1")
	secureLn, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pbxCert.TLS}})
	if err != nil {
		t.Fatal(err)
	}
	tb := &testbed{plain: startPBX(t, plainLn, reject), secure: startPBX(t, secureLn, reject), ca: ca}
	front := ca.Server("example.com")
	yaml := fmt.Sprintf(`listen:
  h323: "127.0.0.1:%d"
  h323s: "127.0.0.1:%d"
tls:
  certificates: [{cert: %q, key: %q}]
  client_cas: [%q]
  target_cas: [%q]
services:
  - name: example.com
    target: 127.0.0.1
    ports: {h323: %d, h323s: %d}
    check_certificate: true
blacklist:
  threshold: %d
`, freePort(t), freePort(t), front.CertFile, front.KeyFile, ca.File, ca.File,
		plainLn.Addr().(*net.TCPAddr).Port, secureLn.Addr().(*net.TCPAddr).Port, threshold)
	cfg, err := configs.Parse("gatehouse.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	tb.guard = guard{proxytest.NewBlacklist(t, cfg.Blacklist)}
	handler := proxy.Stream(Sniffer{})
	srv := proxytest.NewServer(t, yaml, map[string]proxy.Handler{"h323": handler, "h323s": handler}, tb.guard.Guard)
	tb.h323, tb.h323s = srv.Addr("h323"), srv.Addr("h323s")
	return tb
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int { return testpeer.FreePort(t) }

// dial connects a phone from the loopback address src: to the h323 port,
// or over TLS to the h323s port, presenting cert when there is one.
func (tb *testbed) dial(t *testing.T, src string, useTLS bool, cert *testpki.Issued) net.Conn {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	var c net.Conn
	var err error
	if useTLS {
		cfg := &tls.Config{RootCAs: tb.ca.Pool(), ServerName: "example.com"}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{cert.TLS}
		}
		c, err = tls.DialWithDialer(d, "tcp", tb.h323s, cfg)
	} else {
		c, err = d.Dial("tcp", tb.h323)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

func write(t *testing.T, c net.Conn, b []byte) {
	t.Helper()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
}

// readPacket reads one TPKT packet.
func readPacket(t *testing.T, c net.Conn) []byte {
	t.Helper()
	head := make([]byte, tpktHeaderLen)
	if _, err := io.ReadFull(c, head); err != nil {
		t.Fatalf("reading a packet: %v", err)
	}
	n, err := Frame(head)
	if err != nil {
		t.Fatal(err)
	}
	packet := append(head, make([]byte, n-tpktHeaderLen)...)
	if _, err := io.ReadFull(c, packet[tpktHeaderLen:]); err != nil {
		t.Fatal(err)
	}
	return packet
}

// expectClosed checks that gatehouse closes c without sending anything.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read %d bytes, %v: want the connection closed", n, err)
	}
}

// TestGatehouseRegistration: a phone's GRQ arrives with its TPKT header
// alone first, then a keep-alive and an RRQ in one write; the PBX gets
// every byte unchanged, and the phone every answer.
func TestGatehouseRegistration(t *testing.T) {
	tb := startTestbed(t, "", 20)
	c := tb.dial(t, "127.0.0.2", false, nil)
	first := load(t, "grq_example_com")
	write(t, c, first[:tpktHeaderLen])
	time.Sleep(50 * time.Millisecond) // within first_packet_timeout
	write(t, c, first[tpktHeaderLen:])
	rcfPacket := facility(facilityOptions{}, rcf("example.com", h323ID("alice")))
	if got := readPacket(t, c); !bytes.Equal(got, rcfPacket) {
		t.Fatalf("the phone got % x, want the PBX's RCF", got)
	}
	second := append([]byte{3, 0, 0, 4}, facility(facilityOptions{}, rrq("example.com", false, h323ID("alice"), dialled("201")))...)
	write(t, c, second)
	if got := readPacket(t, c); !bytes.Equal(got, rcfPacket) {
		t.Fatalf("the phone got % x, want the PBX's RCF", got)
	}
	want := append(slices.Clone(first), second...)
	if got := tb.plain.received(t, 0, len(want)); !bytes.Equal(got, want) {
		t.Fatalf("the PBX received\n% x\nwant\n% x", got, want)
	}
	if tb.secure.connections() != 0 {
		t.Fatal("a plain registration reached the TLS port")
	}
	tb.guard.waitEvents(t)
}

// TestGatehouseCertificateCheck: over TLS, a registration goes to the
// PBX's TLS port only when the phone's certificate is trusted and names the
// registering alias; any other goes to its plain port.
func TestGatehouseCertificateCheck(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cert    func(tb *testbed) *testpki.Issued
		wantTLS bool
	}{
		{"certificate for both aliases", func(tb *testbed) *testpki.Issued { return tb.ca.Client("alice", "201@example.com") }, true},
		{"certificate for the name, not the number", func(tb *testbed) *testpki.Issued { return tb.ca.Client("alice") }, false},
		{"no certificate", func(tb *testbed) *testpki.Issued { return nil }, false},
		{"certificate for another alias", func(tb *testbed) *testpki.Issued { return tb.ca.Client("bob") }, false},
		{"untrusted certificate", func(tb *testbed) *testpki.Issued { return testpki.NewCA(t, "other").Client("alice") }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := startTestbed(t, "", 20)
			c := tb.dial(t, "127.0.0.2", true, tc.cert(tb))
			packet := facility(facilityOptions{}, rrq("hq@example.com", false, dialled("201"), h323ID("Alice")))
			write(t, c, packet)
			readPacket(t, c)
			used, unused := tb.plain, tb.secure
			if tc.wantTLS {
				used, unused = tb.secure, tb.plain
			}
			if got := used.received(t, 0, len(packet)); !bytes.Equal(got, packet) {
				t.Fatalf("the PBX received % x", got)
			}
			if unused.connections() != 0 {
				t.Fatal("the registration went to the wrong port")
			}
		})
	}
}

// TestGatehouseRegistrationAttack: registrations the PBX rejects are
// counted against the client until it is blacklisted (one more than the
// threshold), while another phone keeps registering.
func TestGatehouseRegistrationAttack(t *testing.T) {
	tb := startTestbed(t, "mallory", 3)
	attacker := tb.dial(t, "127.0.0.3", false, nil)
	phone := tb.dial(t, "127.0.0.4", false, nil)
	guess := facility(facilityOptions{}, rrq("example.com", false, h323ID("mallory")))
	for range 4 {
		write(t, attacker, guess)
		readPacket(t, attacker)
		write(t, phone, load(t, "grq_example_com"))
		readPacket(t, phone)
	}
	reject := "127.0.0.3 h323 example.com: registration rejected by target (RRJ securityDenial)"
	tb.guard.waitEvents(t, reject, reject, reject, reject)
	for deadline := time.Now().Add(5 * time.Second); !tb.guard.Blocked(netip.MustParseAddr("127.0.0.3")); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("127.0.0.3 not blocked")
		}
	}
	expectClosed(t, tb.dial(t, "127.0.0.3", false, nil))
	write(t, phone, load(t, "grq_example_com"))
	readPacket(t, phone)
}

// TestGatehouseRefusals: first packets gatehouse refuses, and a second
// registration for another alias on a routed connection, are reported and
// closed; the PBX never sees them.
func TestGatehouseRefusals(t *testing.T) {
	tb := startTestbed(t, "", 20)
	unknown := tb.dial(t, "127.0.0.5", false, nil)
	write(t, unknown, facility(facilityOptions{}, grq("other.example", h323ID("alice"))))
	expectClosed(t, unknown)
	garbage := tb.dial(t, "127.0.0.6", false, nil)
	write(t, garbage, []byte("GET / HTTP/1.1\r\n\r\n"))
	expectClosed(t, garbage)
	tb.guard.waitEvents(t,
		"127.0.0.5 h323 other.example: "+string(proxy.ReasonUnknownService),
		"127.0.0.6 h323 : "+errTPKT.Error())

	c := tb.dial(t, "127.0.0.7", true, tb.ca.Client("alice"))
	first := load(t, "grq_example_com")
	write(t, c, first)
	readPacket(t, c)
	write(t, c, facility(facilityOptions{}, rrq("example.com", false, h323ID("bob"))))
	expectClosed(t, c)
	tb.guard.waitEvents(t,
		"127.0.0.5 h323 other.example: "+string(proxy.ReasonUnknownService),
		"127.0.0.6 h323 : "+errTPKT.Error(),
		"127.0.0.7 h323s example.com: "+errOtherAlias.Error())
	if got := tb.secure.received(t, 0, len(first)); !bytes.Equal(got, first) {
		t.Fatalf("the PBX received % x, want the first registration alone", got)
	}
	if tb.plain.connections() != 0 {
		t.Fatal("a refused connection reached the PBX")
	}
}
