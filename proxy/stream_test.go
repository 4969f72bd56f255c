package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/proxy"
	"github.com/gatehouse-pbx/gatehouse/proxy/proxytest"
)

func svcYAML(name string, port int, extra string) string {
	return fmt.Sprintf("services:\n  - name: %s\n    target: 127.0.0.1\n    ports: {sip: %d}\n%s", name, port, extra)
}

func TestStreamReplaysFirstBytesAndHalfCloses(t *testing.T) {
	received := make(chan string, 1)
	tg := newTarget(t, func(c net.Conn) {
		all, _ := io.ReadAll(c) // until the client's half-close arrives
		received <- string(all)
		c.Write([]byte("after your EOF\n"))
	})
	_, addr := startProxy(t, svcYAML("pbx.example.com", tg.port(), ""), proxy.Stream(&lineSniffer{}), nil)

	c := proxytest.DialFrom(t, "127.0.0.2", addr)
	// The first packet arrives in two pieces, the second after a pause.
	c.Write([]byte("HELLO PBX.example.com\nfirst "))
	time.Sleep(20 * time.Millisecond)
	c.Write([]byte("second\n"))
	c.(*net.TCPConn).CloseWrite()

	if got, want := <-received, "HELLO PBX.example.com\nfirst second\n"; got != want {
		t.Fatalf("target received %q, want %q", got, want)
	}
	reply, err := io.ReadAll(c)
	if err != nil || string(reply) != "after your EOF\n" {
		t.Fatalf("client read %q, %v", reply, err)
	}
}

func TestStreamRefusals(t *testing.T) {
	tg := newTarget(t, echoLines)
	yaml := svcYAML("pbx.example.com", tg.port(), "    allow:\n      networks:\n        sip: [127.0.0.3/32]\n") +
		"  - name: portless.example.com\n    target: 127.0.0.1\n    ports: {ldap: 389}\n" +
		"limits:\n  first_packet_timeout: 300ms\n  first_packet_max: 1KiB\n"
	for _, tc := range []struct {
		name, send, reason, service string
	}{
		{"unknown service", "HELLO other.example.com\n", string(proxy.ReasonUnknownService), "other.example.com"},
		{"network not allowed", "HELLO pbx.example.com\n", string(proxy.ReasonNetwork), "pbx.example.com"},
		{"no port for the type", "HELLO portless.example.com\n", string(proxy.ReasonNoPort), "portless.example.com"},
		{"garbage", "GET / HTTP/1.1\r\n\r\n", "wrong protocol (not a HELLO)", ""},
		{"half-sent first packet", "HELLO pbx", string(proxy.ReasonTimeout), ""},
		{"oversized first packet", strings.Repeat("x", 1500), "message too large (first packet)", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &proxytest.Guard{}
			_, addr := startProxy(t, yaml, proxy.Stream(&lineSniffer{}), g)
			c := proxytest.DialFrom(t, "127.0.0.2", addr)
			c.Write([]byte(tc.send))
			reply, _ := io.ReadAll(c) // gatehouse answers (via the Refuser) and closes
			if tc.reason != string(proxy.ReasonTimeout) && !strings.HasPrefix(string(reply), "REFUSED "+tc.reason) {
				t.Errorf("reply %q, want the refusal", reply)
			}
			ev := g.WaitReason(t, tc.reason)
			if ev.Client != netip.MustParseAddr("127.0.0.2") || ev.Type != "sip" || ev.Service != tc.service {
				t.Errorf("event %+v", ev)
			}
		})
	}
}

func TestStreamAllowedNetworkIsServed(t *testing.T) {
	tg := newTarget(t, echoLines)
	yaml := svcYAML("pbx.example.com", tg.port(), "    allow:\n      networks:\n        sip: [127.0.0.3]\n")
	_, addr := startProxy(t, yaml, proxy.Stream(&lineSniffer{}), nil)
	c := proxytest.DialFrom(t, "127.0.0.3", addr)
	fmt.Fprint(c, "HELLO pbx.example.com\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "echo: HELLO pbx.example.com\n" {
		t.Fatalf("got %q, %v", line, err)
	}
}

func TestBlockedClientClosedBeforeAnyRead(t *testing.T) {
	tg := newTarget(t, echoLines)
	g := &proxytest.Guard{}
	g.Block(netip.MustParseAddr("127.0.0.4"))
	sn := &lineSniffer{}
	_, addr := startProxy(t, svcYAML("pbx.example.com", tg.port(), ""), proxy.Stream(sn), g)

	c := proxytest.DialFrom(t, "127.0.0.4", addr)
	fmt.Fprint(c, "HELLO pbx.example.com\n")
	if n, err := c.Read(make([]byte, 10)); err == nil {
		t.Fatalf("blocked client read %d bytes", n)
	}
	if sn.calls.Load() != 0 {
		t.Fatal("the sniffer saw bytes of a blocked client")
	}
	// Another address is served meanwhile.
	ok := proxytest.DialFrom(t, "127.0.0.5", addr)
	fmt.Fprint(ok, "HELLO pbx.example.com\n")
	if line, err := bufio.NewReader(ok).ReadString('\n'); err != nil || !strings.HasPrefix(line, "echo:") {
		t.Fatalf("other client: %q, %v", line, err)
	}
}

func TestTargetUnreachableIsReported(t *testing.T) {
	g := &proxytest.Guard{}
	_, addr := startProxy(t, svcYAML("pbx.example.com", freePort(t), ""), proxy.Stream(&lineSniffer{}), g)
	c := proxytest.DialFrom(t, "127.0.0.2", addr)
	fmt.Fprint(c, "HELLO pbx.example.com\n")
	io.ReadAll(c)
	if ev := g.WaitReason(t, string(proxy.ReasonUnreachable)); ev.Service != "pbx.example.com" {
		t.Fatalf("event %+v", ev)
	}
}

func TestWatcherVerdicts(t *testing.T) {
	tg := newTarget(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if line == "LOGIN wrong\n" {
				fmt.Fprint(c, "REJECT\n")
				continue
			}
			if line == "SPOOF\n" {
				// Dropped by the watcher: only the line after it arrives.
				fmt.Fprint(c, "SPOOF\necho: after spoof\n")
				continue
			}
			fmt.Fprintf(c, "echo: %s", line)
		}
	})
	g := &proxytest.Guard{}
	_, addr := startProxy(t, svcYAML("pbx.example.com", tg.port(), ""), proxy.Stream(&lineSniffer{watch: true}), g)
	c := proxytest.DialFrom(t, "127.0.0.2", addr)
	r := bufio.NewReader(c)
	// The first message and a pipelined second one arrive in one write.
	fmt.Fprint(c, "HELLO pbx.example.com\nONE\n")
	for _, want := range []string{"echo: HELLO pbx.example.com\n", "echo: ONE\n"} {
		if line, err := r.ReadString('\n'); line != want {
			t.Fatalf("got %q, %v; want %q", line, err, want)
		}
	}
	fmt.Fprint(c, "DENY\nBAD\n")
	for _, want := range []string{"NO\n", "echo: BAD\n"} {
		if line, err := r.ReadString('\n'); line != want {
			t.Fatalf("got %q, %v; want %q", line, err, want)
		}
	}
	fmt.Fprint(c, "LOGIN wrong\n")
	if line, _ := r.ReadString('\n'); line != "REJECT\n" {
		t.Fatalf("got %q", line)
	}
	g.WaitReason(t, "url not allowed (denied line)")
	g.WaitReason(t, "unreadable request (bad line)")
	g.WaitReason(t, string(proxy.ReasonCredentials))
	fmt.Fprint(c, "SPOOF\n")
	if line, _ := r.ReadString('\n'); line != "echo: after spoof\n" {
		t.Fatalf("after a dropped target line: got %q", line)
	}
	g.WaitReason(t, "target message dropped (spoof)")
	// A message split at every byte still frames.
	for _, b := range []byte("SPLIT\n") {
		c.Write([]byte{b})
		time.Sleep(time.Millisecond)
	}
	if line, _ := r.ReadString('\n'); line != "echo: SPLIT\n" {
		t.Fatalf("got %q", line)
	}
	fmt.Fprint(c, "QUIT\n")
	if rest, _ := io.ReadAll(r); string(rest) != "BYE\n" {
		t.Fatalf("after QUIT: %q", rest)
	}
}

func TestWatcherLongMessageIsStreamed(t *testing.T) {
	// Lines longer than first_packet_max cannot be framed by the line
	// watcher; the framing error ends the connection and is reported.
	tg := newTarget(t, echoLines)
	g := &proxytest.Guard{}
	_, addr := startProxy(t, svcYAML("pbx.example.com", tg.port(), "limits:\n  first_packet_max: 1KiB\n"),
		proxy.Stream(&lineSniffer{watch: true}), g)
	c := proxytest.DialFrom(t, "127.0.0.2", addr)
	fmt.Fprintf(c, "HELLO pbx.example.com\n%s", strings.Repeat("y", 3000))
	io.ReadAll(c)
	g.WaitReason(t, "message too large (message head)")
}

// TestIdleTimeoutClosesOnlyIdleConnections: limits.idle_timeout closes a
// quiet connection while a busy one goes on, for raw relays (read
// deadlines) and framed ones (parked on the poller, which applies the
// timeout in its sweep).
func TestIdleTimeoutClosesOnlyIdleConnections(t *testing.T) {
	for _, framed := range []bool{false, true} {
		t.Run(fmt.Sprintf("framed=%v", framed), func(t *testing.T) {
			tg := newTarget(t, echoLines)
			srv, addr := startProxy(t, svcYAML("pbx.example.com", tg.port(), "limits:\n  idle_timeout: 300ms\n"),
				proxy.Stream(&lineSniffer{watch: framed}), nil)

			busy := proxytest.DialFrom(t, "127.0.0.2", addr)
			idle := proxytest.DialFrom(t, "127.0.0.3", addr)
			br, ir := bufio.NewReader(busy), bufio.NewReader(idle)
			for _, c := range []net.Conn{busy, idle} {
				fmt.Fprint(c, "HELLO pbx.example.com\n")
			}
			br.ReadString('\n')
			ir.ReadString('\n')
			start := time.Now()
			// Keep one connection busy for well over the idle timeout.
			for time.Since(start) < 1500*time.Millisecond {
				fmt.Fprint(busy, "ping\n")
				if line, err := br.ReadString('\n'); err != nil || line != "echo: ping\n" {
					t.Fatalf("busy connection: %q, %v after %v", line, err, time.Since(start))
				}
				time.Sleep(50 * time.Millisecond)
			}
			if _, err := ir.ReadString('\n'); err == nil {
				t.Fatal("idle connection still open")
			}
			deadline := time.Now().Add(proxytest.Wait)
			for len(srv.Conns()) != 1 {
				if time.Now().After(deadline) {
					t.Fatalf("conns after the idle one closed: %+v", srv.Conns())
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

func TestMaxConnsPerIP(t *testing.T) {
	tg := newTarget(t, echoLines)
	_, addr := startProxy(t, svcYAML("pbx.example.com", tg.port(), "limits:\n  max_conns_per_ip: 2\n"),
		proxy.Stream(&lineSniffer{}), nil)
	for i := 0; i < 2; i++ { // both stay open until the test ends (dialFrom)
		c := proxytest.DialFrom(t, "127.0.0.2", addr)
		fmt.Fprint(c, "HELLO pbx.example.com\n")
		if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	third := proxytest.DialFrom(t, "127.0.0.2", addr)
	if _, err := third.Read(make([]byte, 1)); err == nil {
		t.Fatal("third connection from one address was served")
	}
	other := proxytest.DialFrom(t, "127.0.0.3", addr)
	fmt.Fprint(other, "HELLO pbx.example.com\n")
	if _, err := bufio.NewReader(other).ReadString('\n'); err != nil {
		t.Fatalf("another address: %v", err)
	}
}

func TestReloadKeepsEstablishedConnections(t *testing.T) {
	tg := newTarget(t, echoLines)
	g := &proxytest.Guard{}
	srv, addr := startProxy(t, svcYAML("pbx.example.com", tg.port(), ""), proxy.Stream(&lineSniffer{}), g)
	c := proxytest.DialFrom(t, "127.0.0.2", addr)
	r := bufio.NewReader(c)
	fmt.Fprint(c, "HELLO pbx.example.com\n")
	r.ReadString('\n')

	next, err := configs.Parse("test.yaml", []byte("listen:\n  sip: \""+addr+"\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Reload(next); err != nil {
		t.Fatal(err)
	}
	if srv.Addr("sip") != addr {
		t.Fatal("reload moved the listener")
	}
	fmt.Fprint(c, "still here\n")
	if line, err := r.ReadString('\n'); line != "echo: still here\n" {
		t.Fatalf("established connection after reload: %q, %v", line, err)
	}
	n := proxytest.DialFrom(t, "127.0.0.2", addr)
	fmt.Fprint(n, "HELLO pbx.example.com\n")
	io.ReadAll(n)
	g.WaitReason(t, string(proxy.ReasonUnknownService))
}

// TestShutdownClosesStreams: a relayed stream connection (a phone
// registered for hours) is closed as soon as Shutdown begins, not waited
// for until its context ends: its client reconnects to the next process.
func TestShutdownClosesStreams(t *testing.T) {
	tg := newTarget(t, echoLines)
	srv, addr := startProxy(t, svcYAML("pbx.example.com", tg.port(), ""), proxy.Stream(&lineSniffer{}), nil)
	c := proxytest.DialFrom(t, "127.0.0.2", addr)
	fmt.Fprint(c, "HELLO pbx.example.com\n")
	bufio.NewReader(c).ReadString('\n')
	if len(srv.Conns()) != 1 || srv.Conns()[0].Service != "pbx.example.com" {
		t.Fatalf("conns: %+v", srv.Conns())
	}
	idle := proxytest.DialFrom(t, "127.0.0.3", addr) // not yet sniffed: closed too, and not counted
	for deadline := time.Now().Add(5 * time.Second); len(srv.Conns()) < 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("second connection never accepted")
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with a stream open: %v, want it closed at once", err)
	}
	for _, conn := range []net.Conn{c, idle} {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(conn); err != nil {
			t.Fatalf("connection survived the shutdown: %v", err)
		}
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("still accepting after shutdown")
	}
	if st := srv.Stats(); len(st.Reasons) != 0 {
		t.Errorf("the shutdown was counted as refusals: %v", st.Reasons)
	}
}

// TestStatsCountWhatHappened drives real connections through every outcome
// the counters distinguish and checks each one moved exactly as it should.
func TestStatsCountWhatHappened(t *testing.T) {
	tg := newTarget(t, echoLines)
	yaml := svcYAML("pbx.example.com", tg.port(), "") +
		"  - name: down.example.com\n    target: 127.0.0.1\n    ports: {sip: " + fmt.Sprint(freePort(t)) + "}\n"
	g := &proxytest.Guard{}
	g.Block(netip.MustParseAddr("127.0.0.4"))
	srv, addr := startProxy(t, yaml, proxy.Stream(&lineSniffer{}), g)

	served := proxytest.DialFrom(t, "127.0.0.2", addr) // forwarded, stays open
	fmt.Fprint(served, "HELLO pbx.example.com\n")
	if line, err := bufio.NewReader(served).ReadString('\n'); err != nil || !strings.HasPrefix(line, "echo:") {
		t.Fatalf("served client: %q, %v", line, err)
	}
	unknown := proxytest.DialFrom(t, "127.0.0.2", addr)
	fmt.Fprint(unknown, "HELLO scanner-"+strings.Repeat("x", 20)+".example\n")
	io.ReadAll(unknown)
	down := proxytest.DialFrom(t, "127.0.0.2", addr)
	fmt.Fprint(down, "HELLO down.example.com\n")
	io.ReadAll(down)
	blocked := proxytest.DialFrom(t, "127.0.0.4", addr)
	blocked.Read(make([]byte, 1))
	g.WaitReason(t, string(proxy.ReasonUnknownService))
	g.WaitReason(t, string(proxy.ReasonUnreachable))

	// The refusals are counted before the connection ends; poll until the
	// blocked connection's accept is counted too.
	var st proxy.Stats
	for deadline := time.Now().Add(10 * time.Second); ; {
		st = srv.Stats()
		if st.Accepted["sip"] == 4 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st.Accepted["sip"] != 4 || st.Blocked["sip"] != 1 {
		t.Errorf("accepted %v, blocked %v; want 4 and 1", st.Accepted, st.Blocked)
	}
	want := []proxy.ServiceStats{
		{Type: "sip", Service: "", Refused: 1},                 // the scanner's name is not kept
		{Type: "sip", Service: "down.example.com", Refused: 1}, // a failed dial counts once, as refused
		{Type: "sip", Service: "pbx.example.com", Forwarded: 1},
	}
	if fmt.Sprint(st.Services) != fmt.Sprint(want) {
		t.Errorf("services %+v\nwant %+v", st.Services, want)
	}
	if st.Reasons[proxy.ReasonUnknownService] != 1 || st.Reasons[proxy.ReasonUnreachable] != 1 {
		t.Errorf("reasons %v", st.Reasons)
	}
	if st.DialErrors["down.example.com"] != 1 {
		t.Errorf("dial errors %v", st.DialErrors)
	}
	h := st.DialLatency["pbx.example.com"]
	if h.Count != 1 || h.Buckets[len(h.Buckets)-1] != 1 || h.Sum <= 0 {
		t.Errorf("dial latency %+v", h)
	}
}
