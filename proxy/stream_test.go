package proxy

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
	_, addr := startProxy(t, svcYAML("pbx.example.com", tg.port(), ""), Stream(&lineSniffer{}), nil)

	c := dialFrom(t, "127.0.0.2", addr)
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
		{"unknown service", "HELLO other.example.com\n", string(ReasonUnknownService), "other.example.com"},
		{"network not allowed", "HELLO pbx.example.com\n", string(ReasonNetwork), "pbx.example.com"},
		{"no port for the type", "HELLO portless.example.com\n", string(ReasonNoPort), "portless.example.com"},
		{"garbage", "GET / HTTP/1.1\r\n\r\n", "wrong protocol (not a HELLO)", ""},
		{"half-sent first packet", "HELLO pbx", string(ReasonTimeout), ""},
		{"oversized first packet", strings.Repeat("x", 1500), "message too large (first packet)", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &recordingGuard{}
			_, addr := startProxy(t, yaml, Stream(&lineSniffer{}), g)
			c := dialFrom(t, "127.0.0.2", addr)
			c.Write([]byte(tc.send))
			reply, _ := io.ReadAll(c) // gatehouse answers (via the Refuser) and closes
			if tc.reason != string(ReasonTimeout) && !strings.HasPrefix(string(reply), "REFUSED "+tc.reason) {
				t.Errorf("reply %q, want the refusal", reply)
			}
			ev := g.waitReason(t, tc.reason)
			if ev.Client != netip.MustParseAddr("127.0.0.2") || ev.Type != "sip" || ev.Service != tc.service {
				t.Errorf("event %+v", ev)
			}
		})
	}
}

func TestStreamAllowedNetworkIsServed(t *testing.T) {
	tg := newTarget(t, echoLines)
	yaml := svcYAML("pbx.example.com", tg.port(), "    allow:\n      networks:\n        sip: [127.0.0.3]\n")
	_, addr := startProxy(t, yaml, Stream(&lineSniffer{}), nil)
	c := dialFrom(t, "127.0.0.3", addr)
	fmt.Fprint(c, "HELLO pbx.example.com\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "echo: HELLO pbx.example.com\n" {
		t.Fatalf("got %q, %v", line, err)
	}
}

func TestBlockedClientClosedBeforeAnyRead(t *testing.T) {
	tg := newTarget(t, echoLines)
	g := &recordingGuard{blocked: map[netip.Addr]bool{netip.MustParseAddr("127.0.0.4"): true}}
	sn := &lineSniffer{}
	_, addr := startProxy(t, svcYAML("pbx.example.com", tg.port(), ""), Stream(sn), g)

	c := dialFrom(t, "127.0.0.4", addr)
	fmt.Fprint(c, "HELLO pbx.example.com\n")
	if n, err := c.Read(make([]byte, 10)); err == nil {
		t.Fatalf("blocked client read %d bytes", n)
	}
	if sn.calls.Load() != 0 {
		t.Fatal("the sniffer saw bytes of a blocked client")
	}
	// Another address is served meanwhile.
	ok := dialFrom(t, "127.0.0.5", addr)
	fmt.Fprint(ok, "HELLO pbx.example.com\n")
	if line, err := bufio.NewReader(ok).ReadString('\n'); err != nil || !strings.HasPrefix(line, "echo:") {
		t.Fatalf("other client: %q, %v", line, err)
	}
}

func TestTargetUnreachableIsReported(t *testing.T) {
	g := &recordingGuard{}
	_, addr := startProxy(t, svcYAML("pbx.example.com", freePort(t), ""), Stream(&lineSniffer{}), g)
	c := dialFrom(t, "127.0.0.2", addr)
	fmt.Fprint(c, "HELLO pbx.example.com\n")
	io.ReadAll(c)
	if ev := g.waitReason(t, string(ReasonUnreachable)); ev.Service != "pbx.example.com" {
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
	g := &recordingGuard{}
	_, addr := startProxy(t, svcYAML("pbx.example.com", tg.port(), ""), Stream(&lineSniffer{watch: true}), g)
	c := dialFrom(t, "127.0.0.2", addr)
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
	g.waitReason(t, "url not allowed (denied line)")
	g.waitReason(t, "unreadable request (bad line)")
	g.waitReason(t, string(ReasonCredentials))
	fmt.Fprint(c, "SPOOF\n")
	if line, _ := r.ReadString('\n'); line != "echo: after spoof\n" {
		t.Fatalf("after a dropped target line: got %q", line)
	}
	g.waitReason(t, "target message dropped (spoof)")
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
	g := &recordingGuard{}
	_, addr := startProxy(t, svcYAML("pbx.example.com", tg.port(), "limits:\n  first_packet_max: 1KiB\n"),
		Stream(&lineSniffer{watch: true}), g)
	c := dialFrom(t, "127.0.0.2", addr)
	fmt.Fprintf(c, "HELLO pbx.example.com\n%s", strings.Repeat("y", 3000))
	io.ReadAll(c)
	g.waitReason(t, "message too large (message head)")
}

func TestIdleTimeoutClosesOnlyIdleConnections(t *testing.T) {
	tg := newTarget(t, echoLines)
	_, addr := startProxy(t, svcYAML("pbx.example.com", tg.port(), "limits:\n  idle_timeout: 300ms\n"),
		Stream(&lineSniffer{}), nil)

	busy := dialFrom(t, "127.0.0.2", addr)
	idle := dialFrom(t, "127.0.0.3", addr)
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
}

func TestMaxConnsPerIP(t *testing.T) {
	tg := newTarget(t, echoLines)
	_, addr := startProxy(t, svcYAML("pbx.example.com", tg.port(), "limits:\n  max_conns_per_ip: 2\n"),
		Stream(&lineSniffer{}), nil)
	for i := 0; i < 2; i++ { // both stay open until the test ends (dialFrom)
		c := dialFrom(t, "127.0.0.2", addr)
		fmt.Fprint(c, "HELLO pbx.example.com\n")
		if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	third := dialFrom(t, "127.0.0.2", addr)
	if _, err := third.Read(make([]byte, 1)); err == nil {
		t.Fatal("third connection from one address was served")
	}
	other := dialFrom(t, "127.0.0.3", addr)
	fmt.Fprint(other, "HELLO pbx.example.com\n")
	if _, err := bufio.NewReader(other).ReadString('\n'); err != nil {
		t.Fatalf("another address: %v", err)
	}
}

func TestReloadKeepsEstablishedConnections(t *testing.T) {
	tg := newTarget(t, echoLines)
	g := &recordingGuard{}
	srv, addr := startProxy(t, svcYAML("pbx.example.com", tg.port(), ""), Stream(&lineSniffer{}), g)
	c := dialFrom(t, "127.0.0.2", addr)
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
	if srv.Addr("sip").String() != addr {
		t.Fatal("reload moved the listener")
	}
	fmt.Fprint(c, "still here\n")
	if line, err := r.ReadString('\n'); line != "echo: still here\n" {
		t.Fatalf("established connection after reload: %q, %v", line, err)
	}
	n := dialFrom(t, "127.0.0.2", addr)
	fmt.Fprint(n, "HELLO pbx.example.com\n")
	io.ReadAll(n)
	g.waitReason(t, string(ReasonUnknownService))
}

// TestShutdownClosesStreams: a relayed stream connection (a phone
// registered for hours) is closed as soon as Shutdown begins, not waited
// for until its context ends: its client reconnects to the next process.
func TestShutdownClosesStreams(t *testing.T) {
	tg := newTarget(t, echoLines)
	srv, addr := startProxy(t, svcYAML("pbx.example.com", tg.port(), ""), Stream(&lineSniffer{}), nil)
	c := dialFrom(t, "127.0.0.2", addr)
	fmt.Fprint(c, "HELLO pbx.example.com\n")
	bufio.NewReader(c).ReadString('\n')
	if len(srv.Conns()) != 1 || srv.Conns()[0].Service != "pbx.example.com" {
		t.Fatalf("conns: %+v", srv.Conns())
	}
	idle := dialFrom(t, "127.0.0.3", addr) // not yet sniffed: closed too, and not counted
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
