package http

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	stdhttp "net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
)

// echoTarget is a real net/http server with the answers the request loop
// must pass on faithfully: it echoes what arrived, streams, answers
// without a body, with 1xx first, or not at all.
type echoTarget struct {
	*httptest.Server
	conns   atomic.Int64
	release chan struct{} // closed at cleanup: /hang answers then
	proceed chan struct{} // closed by a test: /slow answers then
	started chan struct{} // /slow and /hang say they have begun
}

func newEcho(t *testing.T) *echoTarget {
	e := &echoTarget{release: make(chan struct{}), proceed: make(chan struct{}), started: make(chan struct{}, 16)}
	mux := stdhttp.NewServeMux()
	mux.HandleFunc("/echo", func(w stdhttp.ResponseWriter, r *stdhttp.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			stdhttp.Error(w, err.Error(), 400)
			return
		}
		var keys []string
		for k := range r.Header {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fmt.Fprintf(w, "%s %s host=%s cl=%d te=%v\n", r.Method, r.RequestURI, r.Host, r.ContentLength, r.TransferEncoding)
		for _, k := range keys {
			fmt.Fprintf(w, "%s: %s\n", k, strings.Join(r.Header[k], " | "))
		}
		fmt.Fprintf(w, "body=%s", body)
	})
	mux.HandleFunc("/stream", func(w stdhttp.ResponseWriter, r *stdhttp.Request) {
		w.Header().Set("Trailer", "X-Sum")
		io.WriteString(w, "part1;")
		w.(stdhttp.Flusher).Flush()
		io.WriteString(w, "part2")
		w.Header().Set("X-Sum", "42")
	})
	mux.HandleFunc("/fixed", func(w stdhttp.ResponseWriter, r *stdhttp.Request) {
		w.Header().Set("Content-Length", "5")
		io.WriteString(w, "fixed")
	})
	mux.HandleFunc("/closing", func(w stdhttp.ResponseWriter, r *stdhttp.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, "bye")
	})
	mux.HandleFunc("/nocontent", func(w stdhttp.ResponseWriter, r *stdhttp.Request) { w.WriteHeader(204) })
	mux.HandleFunc("/notmodified", func(w stdhttp.ResponseWriter, r *stdhttp.Request) {
		w.Header().Set("ETag", `"x"`)
		w.WriteHeader(304)
	})
	mux.HandleFunc("/early", func(w stdhttp.ResponseWriter, r *stdhttp.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(stdhttp.StatusEarlyHints)
		io.WriteString(w, "after hints")
	})
	mux.HandleFunc("/reject", func(w stdhttp.ResponseWriter, r *stdhttp.Request) {
		w.WriteHeader(stdhttp.StatusUnauthorized) // without reading the body
	})
	mux.HandleFunc("/slow", func(w stdhttp.ResponseWriter, r *stdhttp.Request) {
		e.started <- struct{}{}
		select {
		case <-e.proceed:
		case <-e.release:
		}
		io.WriteString(w, "slow done")
	})
	mux.HandleFunc("/hang", func(w stdhttp.ResponseWriter, r *stdhttp.Request) {
		e.started <- struct{}{}
		select {
		case <-e.release:
		case <-r.Context().Done():
		}
	})
	e.Server = httptest.NewUnstartedServer(mux)
	e.Config.ConnState = func(c net.Conn, s stdhttp.ConnState) {
		if s == stdhttp.StateNew {
			e.conns.Add(1)
		}
	}
	e.Start()
	t.Cleanup(func() {
		close(e.release)
		e.Close()
	})
	return e
}

func (e *echoTarget) port() string {
	_, port, _ := net.SplitHostPort(e.Listener.Addr().String())
	return port
}

// rawClient speaks HTTP/1.x to the gate byte by byte.
type rawClient struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func (g *gate) raw(t *testing.T) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", g.http)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawClient{t: t, c: c, r: bufio.NewReader(c)}
}

func (rc *rawClient) send(s string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatal(err)
	}
}

// read reads one response to a request with method, and its whole body.
func (rc *rawClient) read(method string) (*stdhttp.Response, string) {
	rc.t.Helper()
	resp, err := stdhttp.ReadResponse(rc.r, &stdhttp.Request{Method: method})
	if err != nil {
		rc.t.Fatalf("reading the response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		rc.t.Fatalf("reading the body: %v", err)
	}
	return resp, string(body)
}

// closed reports whether the gate closed the connection (after any bytes
// still unread): an end of stream, or a reset when it closed with some of
// the request unread.
func (rc *rawClient) closed() bool {
	rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := rc.r.ReadByte()
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

const echoSvc = `  - name: hq.example.com
    target: 127.0.0.1
    ports: {http: %s}`

func TestH1MessagesPassFaithfully(t *testing.T) {
	ca := testpki.NewCA(t, "test")
	echo := newEcho(t)
	g := startGate(t, ca, fmt.Sprintf(echoSvc, echo.port()), "")

	for _, tc := range []struct {
		name, req, method string
		status            int
		want, not         []string // in the body (target's view), or in the head when prefixed "<"
	}{
		{name: "forwarding and hop-by-hop headers",
			req: "GET /echo?q=1 HTTP/1.1\r\nHost: HQ.example.com:80\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n" +
				"Keep-Alive: 300\r\nProxy-Authorization: Basic eDp5\r\nX-Forwarded-For: 198.51.100.1\r\nX-Forwarded-For: 198.51.100.2\r\n" +
				"X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\nForwarded: for=1.2.3.4\r\nAccept: */*\r\n\r\n",
			method: "GET", status: 200,
			want: []string{"GET /echo?q=1 host=HQ.example.com:80 cl=0", "X-Forwarded-For: 198.51.100.1, 198.51.100.2, 127.0.0.1\n",
				"X-Forwarded-Proto: http\n", "Accept: */*\n"},
			not: []string{"X-Secret", "Keep-Alive", "Proxy-Authorization", "X-Forwarded-Host", "Forwarded:", "Connection"}},
		{name: "gatehouse's fields cannot be removed by naming them in Connection",
			req: "GET /echo HTTP/1.1\r\nHost: hq.example.com\r\nConnection: Host, X-Forwarded-For, X-Forwarded-Proto, X-Real-IP\r\n" +
				"X-Real-IP: 203.0.113.9\r\n\r\n",
			method: "GET", status: 200,
			want: []string{"host=hq.example.com", "X-Forwarded-For: 127.0.0.1\n", "X-Forwarded-Proto: http\n", "X-Real-Ip: 127.0.0.1\n"},
			not:  []string{"203.0.113.9"}},
		{name: "content-length body",
			req:    "POST /echo HTTP/1.1\r\nHost: hq.example.com\r\nContent-Length: 5\r\n\r\nhello",
			method: "POST", status: 200, want: []string{"POST /echo host=hq.example.com cl=5", "body=hello"}},
		{name: "chunked body",
			req:    "POST /echo HTTP/1.1\r\nHost: hq.example.com\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
			method: "POST", status: 200, want: []string{"cl=-1 te=[chunked]", "body=abcde"}},
		{name: "empty POST keeps its length",
			req:    "POST /echo HTTP/1.1\r\nHost: hq.example.com\r\nContent-Length: 0\r\n\r\n",
			method: "POST", status: 200, want: []string{"cl=0", "Content-Length: 0\n"}},
		{name: "absolute form", req: "GET http://hq.example.com/echo HTTP/1.1\r\nHost: hq.example.com\r\n\r\n",
			method: "GET", status: 200, want: []string{"GET /echo host=hq.example.com"}},
		{name: "streamed answer is chunked, with trailers",
			req:    "GET /stream HTTP/1.1\r\nHost: hq.example.com\r\nTE: trailers\r\n\r\n",
			method: "GET", status: 200, want: []string{"part1;part2", "<Transfer-Encoding: chunked", "<Trailer X-Sum: 42"}},
		{name: "HEAD keeps the length, sends no body",
			req:    "HEAD /fixed HTTP/1.1\r\nHost: hq.example.com\r\n\r\n",
			method: "HEAD", status: 200, want: []string{"<Content-Length: 5"}},
		{name: "204", req: "GET /nocontent HTTP/1.1\r\nHost: hq.example.com\r\n\r\n", method: "GET", status: 204,
			not: []string{"<Content-Length", "<Transfer-Encoding"}},
		{name: "304", req: "GET /notmodified HTTP/1.1\r\nHost: hq.example.com\r\n\r\n", method: "GET", status: 304,
			want: []string{`<Etag: "x"`}, not: []string{"<Transfer-Encoding"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := g.raw(t)
			// Twice on one connection: the second proves the framing of
			// the first was right on both sides.
			for i := 0; i < 2; i++ {
				rc.send(tc.req)
				resp, body := rc.read(tc.method)
				if resp.StatusCode != tc.status {
					t.Fatalf("status %d, want %d; body %q", resp.StatusCode, tc.status, body)
				}
				head := ""
				for k, vs := range resp.Header {
					head += k + ": " + strings.Join(vs, ",") + "\n"
				}
				for _, te := range resp.TransferEncoding {
					head += "Transfer-Encoding: " + te + "\n"
				}
				for k, vs := range resp.Trailer {
					head += "Trailer " + k + ": " + strings.Join(vs, ",") + "\n"
				}
				if resp.ContentLength >= 0 && tc.method == "HEAD" {
					head += fmt.Sprintf("Content-Length: %d\n", resp.ContentLength)
				}
				check := func(s string) (string, string) {
					if strings.HasPrefix(s, "<") {
						return head, s[1:]
					}
					return body, s
				}
				for _, w := range tc.want {
					if in, s := check(w); !strings.Contains(in, s) {
						t.Errorf("%q not in %q", s, in)
					}
				}
				for _, n := range tc.not {
					if in, s := check(n); strings.Contains(in, s) {
						t.Errorf("%q in %q", s, in)
					}
				}
			}
		})
	}
}

func TestH1KeepAliveAndClose(t *testing.T) {
	ca := testpki.NewCA(t, "test")
	echo := newEcho(t)
	g := startGate(t, ca, fmt.Sprintf(echoSvc, echo.port()), "")

	t.Run("client asks to close", func(t *testing.T) {
		rc := g.raw(t)
		rc.send("GET /fixed HTTP/1.1\r\nHost: hq.example.com\r\nConnection: close\r\n\r\n")
		resp, _ := rc.read("GET")
		if !resp.Close || !rc.closed() {
			t.Fatalf("Connection: close not honoured: %v", resp.Header)
		}
	})
	t.Run("HTTP/1.0 keep-alive", func(t *testing.T) {
		rc := g.raw(t)
		for i := 0; i < 2; i++ {
			rc.send("GET /fixed HTTP/1.0\r\nHost: hq.example.com\r\nConnection: keep-alive\r\n\r\n")
			resp, body := rc.read("GET")
			if body != "fixed" || resp.Header.Get("Connection") != "keep-alive" {
				t.Fatalf("%d %q %v", resp.StatusCode, body, resp.Header)
			}
		}
	})
	t.Run("HTTP/1.0 without keep-alive, streamed answer", func(t *testing.T) {
		rc := g.raw(t)
		rc.send("GET /stream HTTP/1.0\r\nHost: hq.example.com\r\n\r\n")
		resp, body := rc.read("GET")
		if body != "part1;part2" || len(resp.TransferEncoding) != 0 || !rc.closed() {
			t.Fatalf("%q %v %v", body, resp.TransferEncoding, resp.Header)
		}
	})
	t.Run("pipelined", func(t *testing.T) {
		rc := g.raw(t)
		rc.send("GET /fixed HTTP/1.1\r\nHost: hq.example.com\r\n\r\nGET /echo HTTP/1.1\r\nHost: hq.example.com\r\n\r\n")
		if _, body := rc.read("GET"); body != "fixed" {
			t.Fatal(body)
		}
		if _, body := rc.read("GET"); !strings.HasPrefix(body, "GET /echo") {
			t.Fatal(body)
		}
	})
}

func TestH1InformationalResponses(t *testing.T) {
	ca := testpki.NewCA(t, "test")
	echo := newEcho(t)
	g := startGate(t, ca, fmt.Sprintf(echoSvc, echo.port()), "")

	rc := g.raw(t)
	rc.send("GET /early HTTP/1.1\r\nHost: hq.example.com\r\n\r\n")
	resp, _ := rc.read("GET")
	if resp.StatusCode != 103 || resp.Header.Get("Link") == "" {
		t.Fatalf("103 not passed on: %d %v", resp.StatusCode, resp.Header)
	}
	if resp, body := rc.read("GET"); resp.StatusCode != 200 || body != "after hints" {
		t.Fatalf("after 103: %d %q", resp.StatusCode, body)
	}

	// Expect: 100-continue: the target asks for the body, the client sends
	// it only then.
	rc.send("POST /echo HTTP/1.1\r\nHost: hq.example.com\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
	if resp, _ := rc.read("POST"); resp.StatusCode != 100 {
		t.Fatalf("no 100 Continue: %d", resp.StatusCode)
	}
	rc.send("data")
	if resp, body := rc.read("POST"); resp.StatusCode != 200 || !strings.HasSuffix(body, "body=data") {
		t.Fatalf("after 100: %d %q", resp.StatusCode, body)
	}

	// A target that answers without wanting the body: the client gets the
	// answer and the connection ends, since its body never came.
	rc2 := g.raw(t)
	rc2.send("POST /reject HTTP/1.1\r\nHost: hq.example.com\r\nExpect: 100-continue\r\nContent-Length: 100000\r\n\r\n")
	resp, _ = rc2.read("POST")
	if resp.StatusCode != 401 || !resp.Close || !rc2.closed() {
		t.Fatalf("early answer: %d close=%v", resp.StatusCode, resp.Close)
	}
}

func TestH1RefusalsAndUnreadableRequests(t *testing.T) {
	ca := testpki.NewCA(t, "test")
	echo := newEcho(t)
	svc := fmt.Sprintf(echoSvc, echo.port()) + "\n    allow:\n      urls: [/echo, /PBX0/APPS/]"
	g := startGate(t, ca, svc, "limits:\n  first_packet_max: 4KiB")

	for _, tc := range []struct {
		name, req string
		status    int
		event     string
	}{
		{"dot segment", "GET /PBX0/APPS/../admin HTTP/1.1\r\nHost: hq.example.com\r\n\r\n", 403, "hq.example.com: url not allowed"},
		{"encoded dot segment", "GET /PBX0/APPS/%2e%2e/admin HTTP/1.1\r\nHost: hq.example.com\r\n\r\n", 403, "hq.example.com: url not allowed"},
		{"backslash", "GET /PBX0/APPS/..\\admin HTTP/1.1\r\nHost: hq.example.com\r\n\r\n", 403, "hq.example.com: url not allowed"},
		{"unknown host", "GET /echo HTTP/1.1\r\nHost: nobody.example.com\r\n\r\n", 421, "nobody.example.com: unknown service"},
		{"CONNECT", "CONNECT hq.example.com:443 HTTP/1.1\r\nHost: hq.example.com:443\r\n\r\n", 405, ": method not allowed"},
		{"no Host", "GET /echo HTTP/1.1\r\n\r\n", 400, ": unreadable request"},
		{"no Host on HTTP/1.0", "GET /echo HTTP/1.0\r\n\r\n", 421, ": unknown service"}, // legal, and names no service
		{"bad Host", "GET /echo HTTP/1.1\r\nHost: a b\r\n\r\n", 400, ": unreadable request"},
		{"two Hosts", "GET /echo HTTP/1.1\r\nHost: hq.example.com\r\nHost: x\r\n\r\n", 400, ": unreadable request"},
		{"two lengths", "POST /echo HTTP/1.1\r\nHost: hq.example.com\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400, ": unreadable request"},
		{"no form of request target", "GET a:0 HTTP/1.1\r\nHost: hq.example.com\r\n\r\n", 400, ": unreadable request"},
		{"absolute form naming another Host", "GET http://hq.example.com/echo HTTP/1.1\r\nHost: other\r\n\r\n", 400, ": unreadable request"},
		{"HTTP/2 preface on the plain port", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, ": unreadable request"},
		{"header too large", "GET /echo HTTP/1.1\r\nHost: hq.example.com\r\nX-Big: " + strings.Repeat("a", 9000) + "\r\n\r\n", 431, ": unreadable request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := g.raw(t)
			rc.send(tc.req)
			resp, body := rc.read("GET")
			if resp.StatusCode != tc.status {
				t.Fatalf("%d, want %d (%q)", resp.StatusCode, tc.status, body)
			}
			if strings.Contains(body, "127.0.0.1") || strings.Contains(body, echo.port()) || len(body) > 64 {
				t.Fatalf("the refusal says too much: %q", body)
			}
			if !rc.closed() {
				t.Fatal("connection left open after a refusal")
			}
			g.ev.wait(t, tc.event)
		})
	}
}

func TestH1TargetConnectionReuseAndRetry(t *testing.T) {
	ca := testpki.NewCA(t, "test")
	echo := newEcho(t)
	g := startGate(t, ca, fmt.Sprintf(echoSvc, echo.port()), "")
	rc := g.raw(t)
	for i := 0; i < 5; i++ {
		rc.send("GET /fixed HTTP/1.1\r\nHost: hq.example.com\r\n\r\n")
		if _, body := rc.read("GET"); body != "fixed" {
			t.Fatal(body)
		}
	}
	if n := echo.conns.Load(); n != 1 {
		t.Fatalf("5 requests used %d target connections, want 1", n)
	}
	// The target drops its idle connections: a GET on the pooled one is
	// sent again on a new connection, a POST is never sent on a dead one.
	for i, req := range []string{
		"GET /fixed HTTP/1.1\r\nHost: hq.example.com\r\n\r\n",
		"POST /echo HTTP/1.1\r\nHost: hq.example.com\r\nContent-Length: 2\r\n\r\nhi",
	} {
		echo.CloseClientConnections()
		rc.send(req)
		if resp, body := rc.read("GET"); resp.StatusCode != 200 {
			t.Fatalf("request %d after the target closed: %d %q", i, resp.StatusCode, body)
		}
	}
	if n := echo.conns.Load(); n != 3 {
		t.Fatalf("%d target connections, want 3", n)
	}
}

func TestH1TargetTimeoutAndIdleClient(t *testing.T) {
	ca := testpki.NewCA(t, "test")
	echo := newEcho(t)
	g := startGate(t, ca, fmt.Sprintf(echoSvc, echo.port()), "limits:\n  idle_timeout: 1s")
	rc := g.raw(t)
	rc.send("GET /hang HTTP/1.1\r\nHost: hq.example.com\r\n\r\n")
	resp, body := rc.read("GET")
	if resp.StatusCode != stdhttp.StatusGatewayTimeout || strings.Contains(body, "127.0.0.1") {
		t.Fatalf("silent target: %d %q", resp.StatusCode, body)
	}
	// The connection stays usable, and is closed once idle too long.
	rc.send("GET /fixed HTTP/1.1\r\nHost: hq.example.com\r\n\r\n")
	if _, body := rc.read("GET"); body != "fixed" {
		t.Fatal(body)
	}
	if !rc.closed() {
		t.Fatal("an idle client connection was not closed")
	}
	if rs := g.ev.reasons(); len(rs) != 0 {
		t.Fatalf("an idle connection was reported: %q", rs)
	}
}

func TestH1ShutdownAndReload(t *testing.T) {
	ca := testpki.NewCA(t, "test")
	echo := newEcho(t)
	svc := fmt.Sprintf(echoSvc, echo.port()) + "\n    allow:\n      urls: [/fixed, /slow]"
	g := startGate(t, ca, svc, "")

	// A reload: the connection open before it keeps the old rules, a new
	// one gets the new.
	old := g.raw(t)
	old.send("GET /fixed HTTP/1.1\r\nHost: hq.example.com\r\n\r\n")
	old.read("GET")
	newCfg, err := configs.Parse("test.yaml", []byte(strings.Replace(string(mustYAML(t, g)), "[/fixed, /slow]", "[/fixed, /slow, /echo]", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.srv.Reload(newCfg); err != nil {
		t.Fatal(err)
	}
	old.send("GET /echo HTTP/1.1\r\nHost: hq.example.com\r\n\r\n")
	if resp, _ := old.read("GET"); resp.StatusCode != 403 {
		t.Fatalf("old connection after reload: %d", resp.StatusCode)
	}
	fresh := g.raw(t)
	fresh.send("GET /echo HTTP/1.1\r\nHost: hq.example.com\r\n\r\n")
	if resp, _ := fresh.read("GET"); resp.StatusCode != 200 {
		t.Fatalf("new connection after reload: %d", resp.StatusCode)
	}

	// Shutdown: an idle keep-alive connection is closed at once, a request
	// in flight finishes (and its connection closes after it).
	idle := g.raw(t)
	idle.send("GET /fixed HTTP/1.1\r\nHost: hq.example.com\r\n\r\n")
	idle.read("GET")
	busy := g.raw(t)
	busy.send("GET /slow HTTP/1.1\r\nHost: hq.example.com\r\n\r\n")
	<-echo.started
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- g.srv.Shutdown(ctx) }()
	if !idle.closed() {
		t.Fatal("idle connection not closed by Shutdown")
	}
	close(echo.proceed) // Shutdown has begun: let the answer come
	resp, body := busy.read("GET")
	if resp.StatusCode != 200 || body != "slow done" || !resp.Close {
		t.Fatalf("request in flight: %d %q close=%v", resp.StatusCode, body, resp.Close)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestH1TargetClosingAndLargeBodies(t *testing.T) {
	ca := testpki.NewCA(t, "test")
	echo := newEcho(t)
	g := startGate(t, ca, fmt.Sprintf(echoSvc, echo.port()), "")
	rc := g.raw(t)

	// A target that closes after its answer: the client's connection
	// stays, the target's is not reused.
	for i := 0; i < 2; i++ {
		rc.send("GET /closing HTTP/1.1\r\nHost: hq.example.com\r\n\r\n")
		if resp, body := rc.read("GET"); body != "bye" || resp.Close {
			t.Fatalf("%q close=%v", body, resp.Close)
		}
	}
	if n := echo.conns.Load(); n != 2 {
		t.Fatalf("%d target connections for 2 answers with Connection: close, want 2", n)
	}

	// Bodies larger than any buffer, both framings, both ways (the echo
	// answers without a length, so the answer is re-chunked).
	big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
	var chunked strings.Builder
	for rest := big; rest != ""; rest = rest[min(len(rest), 100000):] {
		part := rest[:min(len(rest), 100000)]
		fmt.Fprintf(&chunked, "%x\r\n%s\r\n", len(part), part)
	}
	chunked.WriteString("0\r\n\r\n")
	for _, req := range []string{
		fmt.Sprintf("POST /echo HTTP/1.1\r\nHost: hq.example.com\r\nContent-Length: %d\r\n\r\n%s", len(big), big),
		"POST /echo HTTP/1.1\r\nHost: hq.example.com\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked.String(),
	} {
		go rc.c.Write([]byte(req)) // the gate may answer before it has read it all
		resp, body := rc.read("POST")
		if resp.StatusCode != 200 || !strings.HasSuffix(body, "body="+big) {
			t.Fatalf("large body: %d, %d bytes", resp.StatusCode, len(body))
		}
	}
}

func TestH1ClientBreakingOffDoesNotStick(t *testing.T) {
	ca := testpki.NewCA(t, "test")
	echo := newEcho(t)
	g := startGate(t, ca, fmt.Sprintf(echoSvc, echo.port()), "")
	for _, req := range []string{
		"POST /echo HTTP/1.1\r\nHost: hq.example.com\r\nContent-Length: 100000\r\n\r\nonly this",
		"POST /echo HTTP/1.1\r\nHost: hq.example.com\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nshort",
		"GET /hang HTTP/1.1\r\nHost: hq.example.com\r\n\r\n",
		"GET /echo HTTP/1.1\r\nHost: hq.exa",
	} {
		rc := g.raw(t)
		rc.send(req)
		if strings.Contains(req, "/hang") {
			<-echo.started
		}
		rc.c.Close()
	}
	if _, body := get(t, g.client, "http://hq.example.com/fixed"); body != "fixed" {
		t.Fatal(body)
	}
	// Every request loop has ended: Shutdown finds nothing to wait for
	// but the idle client connection of g.client, which it closes.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.srv.Shutdown(ctx); err != nil {
		t.Fatalf("a connection outlived its client: %v", err)
	}
}

func TestH1ShutdownOutOfTime(t *testing.T) {
	ca := testpki.NewCA(t, "test")
	echo := newEcho(t)
	g := startGate(t, ca, fmt.Sprintf(echoSvc, echo.port()), "")
	rc := g.raw(t)
	rc.send("GET /hang HTTP/1.1\r\nHost: hq.example.com\r\n\r\n")
	<-echo.started
	// The target never answers and the client stays: Shutdown's time runs
	// out, and it still returns, with every connection closed.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := g.srv.Shutdown(ctx); err != context.DeadlineExceeded {
		t.Fatalf("Shutdown: %v, want %v", err, context.DeadlineExceeded)
	}
	// (It may have had a 502 first.)
	rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var ne net.Error
	if _, err := io.ReadAll(rc.r); errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("client connection left open")
	}
}

func TestPoolBoundsAndAge(t *testing.T) {
	p := newPool(2, time.Minute)
	key := poolKey{addr: "t:80"}
	conns := make([]*targetConn, 3)
	for i := range conns {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		conns[i] = newTargetConn(a, key)
		p.put(conns[i])
	}
	// The third went over the bound and was closed.
	if _, err := conns[2].conn.Write([]byte("x")); err == nil {
		t.Fatal("a connection over the bound was kept open")
	}
	if got := p.get(key); got != conns[1] {
		t.Fatal("not the most recently used first")
	}
	if got := p.get(poolKey{addr: "other:80"}); got != nil {
		t.Fatal("a connection to another target")
	}
	conns[0].idleSince = time.Now().Add(-2 * time.Minute)
	if got := p.get(key); got != nil {
		t.Fatal("a connection idle too long was handed out")
	}
	p.closeAll()
	a, b := net.Pipe()
	defer b.Close()
	late := newTargetConn(a, key)
	p.put(late)
	if _, err := late.conn.Write([]byte("x")); err == nil || p.get(key) != nil {
		t.Fatal("a closed pool kept a connection")
	}
}

// mustYAML returns the YAML the gate was started with.
func mustYAML(t *testing.T, g *gate) []byte {
	t.Helper()
	if g.yaml == "" {
		t.Fatal("gate without its YAML")
	}
	return []byte(g.yaml)
}

// BenchmarkKeepAlive measures one small GET through the handler on a
// keep-alive client connection, to a real net/http target.
func BenchmarkKeepAlive(b *testing.B) {
	target := httptest.NewServer(stdhttp.HandlerFunc(func(w stdhttp.ResponseWriter, r *stdhttp.Request) {
		w.Header().Set("Content-Length", "200")
		w.Write(small)
	}))
	defer target.Close()
	_, port, _ := net.SplitHostPort(target.Listener.Addr().String())
	g := startGate(b, testpki.NewCA(b, "bench"), fmt.Sprintf(echoSvc, port), "")
	c, err := net.Dial("tcp", g.http)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	req := []byte("GET /small HTTP/1.1\r\nHost: hq.example.com\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	get := &stdhttp.Request{Method: "GET"}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		resp, err := stdhttp.ReadResponse(r, get)
		if err != nil {
			b.Fatal(err)
		}
		if n, _ := io.Copy(io.Discard, resp.Body); n != 200 || resp.StatusCode != 200 {
			b.Fatalf("%d, %d bytes", resp.StatusCode, n)
		}
	}
}

var small = []byte(strings.Repeat("x", 200))

// A body trickled slower than limits.body_timeout allows ends with 408,
// and the target connection it held is closed.
func TestH1SlowBodyIsCut(t *testing.T) {
	ca := testpki.NewCA(t, "test")
	echo := newEcho(t)
	g := startGate(t, ca, fmt.Sprintf(echoSvc, echo.port()), "limits:\n  body_timeout: 1s")
	rc := g.raw(t)
	rc.send("POST /echo HTTP/1.1\r\nHost: hq.example.com\r\nContent-Length: 100\r\n\r\nabc")
	start := time.Now()
	go func() {
		// One byte every 300 ms: never idle, but far too slow.
		for i := 0; i < 20; i++ {
			time.Sleep(300 * time.Millisecond)
			if _, err := rc.c.Write([]byte("x")); err != nil {
				return
			}
		}
	}()
	resp, _ := rc.read("POST")
	if resp.StatusCode != stdhttp.StatusRequestTimeout {
		t.Fatalf("slow body: %d, want 408", resp.StatusCode)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("cut after %v with body_timeout 1s", d)
	}
	if !rc.closed() {
		t.Fatal("connection left open after a slow body")
	}
}

// misbehaving is a target that answers every request on a connection with
// answer(n), n counting the requests on it: a stand-in for the buggy
// embedded servers whose extra bytes must never reach another client.
func misbehaving(t *testing.T, answer func(n int, c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				for n := 1; ; n++ {
					req, err := stdhttp.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					answer(n, c)
				}
			}()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

func TestPooledConnectionsCarryNoLeftovers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer func(n int, c net.Conn)
		first  int // status the first client gets
	}{
		{"longer than framed", func(n int, c net.Conn) {
			io.WriteString(c, fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nEVIL-%d", n))
		}, 200},
		{"a second answer later", func(n int, c net.Conn) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			time.Sleep(50 * time.Millisecond)
			io.WriteString(c, fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nEVIL-%d", n))
		}, 200},
		{"101 unasked", func(n int, c net.Conn) {
			io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nEVIL-1")
		}, 502},
		{"whitespace before a colon", func(n int, c net.Conn) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding : chunked\r\n\r\nokEVIL-1")
		}, 502},
		{"length and chunked", func(n int, c net.Conn) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 20\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nEVIL-1")
		}, 502},
		{"body cut short", func(n int, c net.Conn) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\nok")
			c.Close()
		}, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := misbehaving(t, tc.answer)
			g := startGate(t, testpki.NewCA(t, "test"), fmt.Sprintf(echoSvc, port), "")
			a := g.raw(t)
			a.send("GET /a HTTP/1.1\r\nHost: hq.example.com\r\n\r\n")
			resp, err := stdhttp.ReadResponse(a.r, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.first || strings.Contains(string(body), "EVIL") {
				t.Fatalf("first client: %d %q", resp.StatusCode, body)
			}
			time.Sleep(100 * time.Millisecond) // the late bytes are there now
			// Another client's request goes to the same target; it must not
			// get what the target sent unasked.
			b := g.raw(t)
			b.send("GET /b HTTP/1.1\r\nHost: hq.example.com\r\n\r\n")
			resp, err = stdhttp.ReadResponse(b.r, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ = io.ReadAll(resp.Body)
			if strings.Contains(string(body), "EVIL") {
				t.Fatalf("the second client got an answer meant for nobody: %q", body)
			}
		})
	}
}
