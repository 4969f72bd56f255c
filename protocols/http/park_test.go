package http

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	stdhttp "net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
)

// loopGoroutines counts the goroutines in the HTTP/1 request loop.
func loopGoroutines() int {
	buf := make([]byte, 4<<20)
	n := 0
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "http.(*h1conn)") {
			n++
		}
	}
	return n
}

// TestH1IdleKeepAliveHoldsNoGoroutine: a kept-alive connection between
// requests (a phone's, for hours) keeps no goroutine (and its stack): it
// waits on the proxy's poller, over plain TCP and TLS, and the next
// request, pipelined ones included, is served as before.
func TestH1IdleKeepAliveHoldsNoGoroutine(t *testing.T) {
	ca := testpki.NewCA(t, "test")
	echo := newEcho(t)
	g := startGate(t, ca, "  - name: hq.example.com\n    target: 127.0.0.1\n    ports: {http: "+echo.port()+"}", "")
	plain := g.raw(t)
	tc, err := tls.Dial("tcp", g.https, &tls.Config{RootCAs: ca.Pool(), ServerName: "hq.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	secure := &rawClient{t: t, c: tc, r: bufio.NewReader(tc)}
	quiet := func(what string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for loopGoroutines() > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d goroutines in the request loop", what, loopGoroutines())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for round := range 3 {
		for _, rc := range []*rawClient{plain, secure} {
			// Two pipelined in one write: the second is in crypto/tls's
			// buffer, or the socket, when the first is answered.
			rc.send("GET /fixed HTTP/1.1\r\nHost: hq.example.com\r\n\r\nGET /echo HTTP/1.1\r\nHost: hq.example.com\r\n\r\n")
			if _, body := rc.read("GET"); body != "fixed" {
				t.Fatalf("round %d: %q", round, body)
			}
			if _, body := rc.read("GET"); !strings.HasPrefix(body, "GET /echo") {
				t.Fatalf("round %d: %q", round, body)
			}
		}
		quiet(fmt.Sprintf("after round %d", round))
	}
}

// TestH1FirstRequestKeepsTheListenersDeadline: the first request's head
// must be done by limits.first_packet_timeout after accept (handshake
// included), however late its first byte came: a first byte just before
// the deadline does not buy the head another first_packet_timeout.
func TestH1FirstRequestKeepsTheListenersDeadline(t *testing.T) {
	ca := testpki.NewCA(t, "test")
	echo := newEcho(t)
	g := startGate(t, ca, fmt.Sprintf(echoSvc, echo.port()), "limits:\n  first_packet_timeout: 600ms")
	rc := g.raw(t)
	time.Sleep(400 * time.Millisecond)
	head := "GET /fixed HTTP/1.1\r\nHost: hq.example.com\r\n\r\n"
	rc.send(head[:1])
	// The rest by 900 ms after accept at the earliest: past the
	// listener's deadline, within 600 ms of the first byte.
	for i := 1; i < len(head); i += 10 {
		time.Sleep(50 * time.Millisecond)
		if _, err := io.WriteString(rc.c, head[i:min(i+10, len(head))]); err != nil {
			return // closed by the deadline: what should happen
		}
	}
	rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if resp, err := stdhttp.ReadResponse(rc.r, nil); err == nil && resp.StatusCode == 200 {
		t.Fatal("a first request whose head ended after first_packet_timeout was served")
	}
}

// TestH1KeptAliveHeadDeadline: the head of a kept-alive connection's next
// request that does not come in one piece gets first_packet_timeout from
// its first byte (set by the count reader's rearm, after awaitRequest's
// shorter park grace) and no more. The first half fails when the grace
// stays in force for the rest of the head, the second when no deadline
// does.
func TestH1KeptAliveHeadDeadline(t *testing.T) {
	ca := testpki.NewCA(t, "test")
	echo := newEcho(t)
	g := startGate(t, ca, fmt.Sprintf(echoSvc, echo.port()), "limits:\n  first_packet_timeout: 1s")
	rc := g.raw(t)
	get := func(what string) {
		t.Helper()
		rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := stdhttp.ReadResponse(rc.r, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", what, resp, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	rc.send("GET /fixed HTTP/1.1\r\nHost: hq.example.com\r\n\r\n")
	get("first request")
	// At once after the answer, within the park grace: half a head, then
	// the rest 300 ms later (past the grace, within the head's second).
	rc.send("GET /fixed HTTP/1.1\r\n")
	time.Sleep(300 * time.Millisecond)
	rc.send("Host: hq.example.com\r\n\r\n")
	get("a head in two pieces 300 ms apart")
	// A head trickled for 2.5 s is cut.
	rc.send("GET /fixed HTTP/1.1\r\nHost: hq.example.com\r\n")
	for i := 0; i < 25; i++ {
		time.Sleep(100 * time.Millisecond)
		if _, err := io.WriteString(rc.c, "X-A: b\r\n"); err != nil {
			return // closed by the deadline: what should happen
		}
	}
	io.WriteString(rc.c, "\r\n")
	rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if resp, err := stdhttp.ReadResponse(rc.r, nil); err == nil && resp.StatusCode == 200 {
		t.Fatal("a kept-alive request whose head took 2.5 s was served with first_packet_timeout 1s")
	}
}
