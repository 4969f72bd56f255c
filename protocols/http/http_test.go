package http

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	stdhttp "net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/blacklist"
	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
	"github.com/gatehouse-pbx/gatehouse/proxy"
	"github.com/gatehouse-pbx/gatehouse/proxy/proxytest"
)

// events records what the proxy reports.
type events struct{ *proxytest.Guard }

// reasons returns "service: reason" for every event so far.
func (e events) reasons() []string {
	var rs []string
	for _, ev := range e.Events() {
		rs = append(rs, ev.Service+": "+ev.Reason)
	}
	return rs
}

func (e events) wait(t *testing.T, want string) {
	t.Helper()
	e.WaitFor(t, fmt.Sprintf("%q", want), func(ev blacklist.Event) bool { return ev.Service+": "+ev.Reason == want })
}

// pbxTarget is a real net/http server standing in for the PBX's web
// server: it echoes what it was asked and counts its connections.
type pbxTarget struct {
	*httptest.Server
	conns atomic.Int64
}

func newPBX(t *testing.T, tlsCert *tls.Certificate) *pbxTarget {
	p := &pbxTarget{}
	mux := stdhttp.NewServeMux()
	mux.HandleFunc("/", func(w stdhttp.ResponseWriter, r *stdhttp.Request) {
		fmt.Fprintf(w, "path=%s host=%s xff=%s xfp=%s proto=%d", r.URL.RequestURI(), r.Host,
			r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"), r.ProtoMajor)
	})
	mux.HandleFunc("/PBX0/MY/login", func(w stdhttp.ResponseWriter, r *stdhttp.Request) {
		w.WriteHeader(stdhttp.StatusUnauthorized)
	})
	mux.HandleFunc("/PBX0/WEBSOCKET", func(w stdhttp.ResponseWriter, r *stdhttp.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			stdhttp.Error(w, "not an upgrade", 400)
			return
		}
		conn, rw, err := stdhttp.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		rw.Flush()
		for {
			line, err := rw.ReadString('\n')
			if err != nil {
				return
			}
			rw.WriteString("ws echo: " + line)
			rw.Flush()
		}
	})
	p.Server = httptest.NewUnstartedServer(mux)
	p.Config.ConnState = func(c net.Conn, s stdhttp.ConnState) {
		if s == stdhttp.StateNew {
			p.conns.Add(1)
		}
	}
	if tlsCert != nil {
		p.TLS = &tls.Config{Certificates: []tls.Certificate{*tlsCert}}
		p.StartTLS()
	} else {
		p.Start()
	}
	t.Cleanup(p.Close)
	return p
}

func (p *pbxTarget) port() string {
	_, port, _ := net.SplitHostPort(p.Listener.Addr().String())
	return port
}

type gate struct {
	h      *Handler
	yaml   string
	srv    *proxy.Server
	ev     events
	ca     *testpki.CA
	http   string
	https  string
	client *stdhttp.Client
}

func freeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startGate runs gatehouse's proxy with the HTTP handler on free loopback
// ports; services is the YAML of the services list.
func startGate(t testing.TB, ca *testpki.CA, services string, extra string) *gate {
	t.Helper()
	cert := ca.Server("hq.example.com", "other.example.com")
	yaml := fmt.Sprintf(`listen:
  http: %q
  https: %q
tls:
  certificates:
    - {cert: %s, key: %s}
  target_cas: [%s]
services:
%s
%s`, freeAddr(t), freeAddr(t), cert.CertFile, cert.KeyFile, ca.File, services, extra)
	h := New(slog.New(slog.DiscardHandler))
	ev := events{&proxytest.Guard{}}
	srv := proxytest.NewServer(t, yaml, map[string]proxy.Handler{"http": h, "https": h}, ev.Guard).Server
	g := &gate{h: h, yaml: yaml, srv: srv, ev: ev, ca: ca, http: srv.Addr("http").String(), https: srv.Addr("https").String()}
	g.client = g.clientFrom("127.0.0.2", false)
	return g
}

// clientFrom is an HTTP client that connects from src to the gate whatever
// the URL's host, like curl --resolve.
func (g *gate) clientFrom(src string, h2 bool) *stdhttp.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	tr := &stdhttp.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if strings.HasSuffix(addr, ":443") {
				return d.DialContext(ctx, network, g.https)
			}
			return d.DialContext(ctx, network, g.http)
		},
		TLSClientConfig:   &tls.Config{RootCAs: g.ca.Pool()},
		ForceAttemptHTTP2: h2,
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) stdhttp.RoundTripper{}
	}
	return &stdhttp.Client{Transport: tr, Timeout: 10 * time.Second}
}

func get(t *testing.T, c *stdhttp.Client, url string, hdr ...string) (int, string) {
	t.Helper()
	req, _ := stdhttp.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

const myPBX = `  - name: hq.example.com
    target: 127.0.0.1
    ports: {http: %s}
    allow:
      urls: [/PBX0/MY, /PBX0/WEBSOCKET, /PBX0/APPS/]`

func TestRoutingByHostAndForwardedHeaders(t *testing.T) {
	ca := testpki.NewCA(t, "test")
	pbx := newPBX(t, nil)
	g := startGate(t, ca, fmt.Sprintf(myPBX, pbx.port()), "")

	code, body := get(t, g.client, "http://HQ.Example.com:80/PBX0/MY/index.htm?x=1", "X-Forwarded-For", "198.51.100.9")
	want := "path=/PBX0/MY/index.htm?x=1 host=HQ.Example.com:80 xff=198.51.100.9, 127.0.0.2 xfp=http proto=1"
	if code != 200 || body != want {
		t.Fatalf("got %d %q\nwant 200 %q", code, body, want)
	}
	code, body = get(t, g.client, "https://hq.example.com/PBX0/APPS/app.htm")
	if code != 200 || !strings.Contains(body, "xff=127.0.0.2 xfp=https") {
		t.Fatalf("https: %d %q", code, body)
	}
}

func TestRefusalsPerRequestOnOneConnection(t *testing.T) {
	ca := testpki.NewCA(t, "test")
	pbx := newPBX(t, nil)
	g := startGate(t, ca, fmt.Sprintf(myPBX, pbx.port()), "")

	c, err := net.Dial("tcp", g.http)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	for _, tc := range []struct {
		host, path string
		status     int
	}{
		{"hq.example.com", "/PBX0/MY", 200},
		{"hq.example.com", "/PBX0/ADMIN.xml", 403},
	} {
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", tc.path, tc.host)
		resp, err := stdhttp.ReadResponse(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Fatalf("%s%s: %d, want %d", tc.host, tc.path, resp.StatusCode, tc.status)
		}
	}
	g.ev.wait(t, "hq.example.com: url not allowed")

	code, body := get(t, g.client, "http://unknown.example.com/PBX0/MY")
	if code != stdhttp.StatusMisdirectedRequest || strings.Contains(body, "example") {
		t.Fatalf("unknown host: %d %q", code, body)
	}
	g.ev.wait(t, "unknown.example.com: unknown service")
}

func TestAllowedNetworks(t *testing.T) {
	ca := testpki.NewCA(t, "test")
	pbx := newPBX(t, nil)
	svc := fmt.Sprintf("  - name: hq.example.com\n    target: 127.0.0.1\n    ports: {http: %s}\n    allow:\n      networks:\n        http: [127.0.0.3/32]", pbx.port())
	g := startGate(t, ca, svc, "")
	if code, _ := get(t, g.clientFrom("127.0.0.2", false), "http://hq.example.com/"); code != 403 {
		t.Fatalf("from a network not allowed: %d", code)
	}
	if code, _ := get(t, g.clientFrom("127.0.0.3", false), "http://hq.example.com/"); code != 200 {
		t.Fatalf("from the allowed network: %d", code)
	}
	g.ev.wait(t, "hq.example.com: network not allowed")
}

func TestHTTP2PerStreamRouting(t *testing.T) {
	ca := testpki.NewCA(t, "test")
	pbx := newPBX(t, nil)
	other := newPBX(t, nil)
	svcs := fmt.Sprintf(myPBX, pbx.port()) +
		fmt.Sprintf("\n  - name: other.example.com\n    target: 127.0.0.1\n    ports: {http: %s}", other.port())
	g := startGate(t, ca, svcs, "")
	c := g.clientFrom("127.0.0.2", true)
	// Both names share the certificate, so the client coalesces them onto
	// one HTTP/2 connection: each stream must still go to its own service.
	for _, tc := range []struct{ url, want string }{
		{"https://hq.example.com/PBX0/MY", "host=hq.example.com"},
		{"https://other.example.com/x", "host=other.example.com"},
		{"https://hq.example.com/PBX0/ADMIN", ""},
	} {
		req, _ := stdhttp.NewRequest("GET", tc.url, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Fatalf("%s: HTTP/%d, want HTTP/2", tc.url, resp.ProtoMajor)
		}
		if tc.want == "" {
			if resp.StatusCode != 403 {
				t.Fatalf("%s: %d, want 403", tc.url, resp.StatusCode)
			}
			continue
		}
		if !strings.Contains(string(body), tc.want) {
			t.Fatalf("%s: %q", tc.url, body)
		}
	}
}

// upgradeRequest asks the myPBX service for a WebSocket.
const upgradeRequest = "GET /PBX0/WEBSOCKET HTTP/1.1\r\nHost: hq.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

// openWebSocket upgrades a new connection to g's http listener; the
// target echoes every line after its 101.
func openWebSocket(t *testing.T, g *gate) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", g.http)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(c, upgradeRequest)
	r := bufio.NewReader(c)
	if resp, err := stdhttp.ReadResponse(r, nil); err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	return c, r
}

func TestWebSocketUpgradePasses(t *testing.T) {
	ca := testpki.NewCA(t, "test")
	pbx := newPBX(t, nil)
	g := startGate(t, ca, fmt.Sprintf(myPBX, pbx.port()), "")
	c, r := openWebSocket(t, g)
	fmt.Fprint(c, "hello\n")
	if line, err := r.ReadString('\n'); line != "ws echo: hello\n" {
		t.Fatalf("after upgrade: %q %v", line, err)
	}
}

// An upgraded stream lives while either side talks, however long, and
// ends once both have been silent for limits.idle_timeout.
func TestWebSocketIdleTimeout(t *testing.T) {
	ca := testpki.NewCA(t, "test")
	pbx := newPBX(t, nil)
	g := startGate(t, ca, fmt.Sprintf(myPBX, pbx.port()), "limits:\n  idle_timeout: 1s")
	c, r := openWebSocket(t, g)
	for start := time.Now(); time.Since(start) < 3*time.Second; time.Sleep(100 * time.Millisecond) {
		fmt.Fprint(c, "ping\n")
		if line, err := r.ReadString('\n'); line != "ws echo: ping\n" {
			t.Fatalf("an active stream after %v: %q %v", time.Since(start), line, err)
		}
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if n, err := r.Read(make([]byte, 1)); err == nil {
		t.Fatalf("an idle stream read %d bytes", n)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("an idle stream was not closed by gatehouse")
	}
}

// The live connection list counts HTTP/1.x bytes both ways, request by
// request, and through an upgraded stream.
func TestConnectionBytesCounted(t *testing.T) {
	ca := testpki.NewCA(t, "test")
	pbx := newPBX(t, nil)
	g := startGate(t, ca, fmt.Sprintf(myPBX, pbx.port()), "")
	c, r := openWebSocket(t, g)
	sent := int64(len(upgradeRequest))
	send := func(s string) { fmt.Fprint(c, s); sent += int64(len(s)) }
	send("hello\n")
	line, _ := r.ReadString('\n')
	if line != "ws echo: hello\n" {
		t.Fatalf("after upgrade: %q", line)
	}
	got := int64(len(line)) // and the 101's head, whatever its length
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		conns := g.srv.Conns()
		if len(conns) == 1 && conns[0].BytesIn == sent && conns[0].BytesOut > got {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("connections %+v: want %d bytes in and more than %d out", conns, sent, got)
		}
	}
}

func TestTargetRejectingCredentialsIsSuspicious(t *testing.T) {
	ca := testpki.NewCA(t, "test")
	pbx := newPBX(t, nil)
	g := startGate(t, ca, fmt.Sprintf(myPBX, pbx.port()), "")
	if code, _ := get(t, g.client, "http://hq.example.com/PBX0/MY/login"); code != 401 {
		t.Fatal(code)
	}
	time.Sleep(50 * time.Millisecond)
	if len(g.ev.reasons()) != 0 {
		t.Fatalf("a challenge without credentials was reported: %q", g.ev.reasons())
	}
	if code, _ := get(t, g.client, "http://hq.example.com/PBX0/MY/login", "Authorization", "Basic YTpi"); code != 401 {
		t.Fatal(code)
	}
	g.ev.wait(t, "hq.example.com: "+string(proxy.ReasonCredentials)+" (401)")
}

func TestTargetDownAndTLSTarget(t *testing.T) {
	ca := testpki.NewCA(t, "test")
	tlsPBX := newPBX(t, &ca.Server("127.0.0.1").TLS)
	svcs := fmt.Sprintf("  - name: hq.example.com\n    target: 127.0.0.1\n    ports: {https: %s}\n", tlsPBX.port()) +
		fmt.Sprintf("  - name: other.example.com\n    target: 127.0.0.1\n    ports: {http: %s}", strings.Split(freeAddr(t), ":")[1])
	g := startGate(t, ca, svcs, "")
	// Only the https port is set: plain HTTP from the client goes to the
	// target over TLS, verified against tls.target_cas.
	if code, body := get(t, g.client, "http://hq.example.com/x"); code != 200 || !strings.Contains(body, "xfp=http ") {
		t.Fatalf("tls target: %d %q", code, body)
	}
	code, body := get(t, g.client, "http://other.example.com/x")
	if code != stdhttp.StatusBadGateway || strings.Contains(body, "127.0.0.1") {
		t.Fatalf("target down: %d %q", code, body)
	}
	g.ev.wait(t, "other.example.com: "+string(proxy.ReasonUnreachable))
}

func TestTargetConnectionsAreReused(t *testing.T) {
	ca := testpki.NewCA(t, "test")
	pbx := newPBX(t, nil)
	g := startGate(t, ca, fmt.Sprintf(myPBX, pbx.port()), "")
	for i := 0; i < 20; i++ {
		c := g.clientFrom("127.0.0.2", false) // a new client connection each time
		if code, _ := get(t, c, "http://hq.example.com/PBX0/MY"); code != 200 {
			t.Fatal(code)
		}
		c.CloseIdleConnections()
		// The client's loop gives its kept target connection back to the
		// pool when it sees the client go.
		waitIdle(t, g.pool(), pbx.port(), 1)
	}
	if n := pbx.conns.Load(); n != 1 {
		t.Fatalf("20 requests on 20 client connections opened %d target connections, want 1", n)
	}
}

func TestJunkIsRefusedAndReported(t *testing.T) {
	ca := testpki.NewCA(t, "test")
	pbx := newPBX(t, nil)
	g := startGate(t, ca, fmt.Sprintf(myPBX, pbx.port()), "")
	c, err := net.Dial("tcp", g.http)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("\x16\x03\x01\x00\xa5junk junk\r\n\r\n"))
	resp, _ := io.ReadAll(c)
	if !strings.HasPrefix(string(resp), "HTTP/1.1 400") {
		t.Fatalf("junk answered %q", resp)
	}
	g.ev.wait(t, ": unreadable request")
	// A browser's unused preconnect is not suspicious.
	pre, _ := net.Dial("tcp", g.http)
	pre.Close()
	if code, _ := get(t, g.client, "http://hq.example.com/PBX0/MY"); code != 200 {
		t.Fatal(code)
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(g.ev.reasons()); n != 1 {
		t.Fatalf("events: %q", g.ev.reasons())
	}
}
