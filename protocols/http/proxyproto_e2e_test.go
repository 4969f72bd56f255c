package http

import (
	"bufio"
	"fmt"
	"io"
	"net"
	stdhttp "net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
)

// startNginxPP runs nginx listening with proxy_protocol: it answers every
// request with the client address it read from the PROXY header and logs it.
func startNginxPP(t *testing.T) (port string, accessLog func() string) {
	port = fmt.Sprint(testpeer.FreePort(t))
	dir := testpeer.Nginx(t, `
	log_format pp 'PP $proxy_protocol_addr:$proxy_protocol_port $request_uri';
	access_log @DIR@/access.log pp;
	server {
		listen 127.0.0.1:`+port+` proxy_protocol;
		location / { return 200 "pp=$proxy_protocol_addr:$proxy_protocol_port"; }
	}`)
	testpeer.WaitListening(t, "127.0.0.1:"+port)
	return port, func() string {
		b, _ := os.ReadFile(filepath.Join(dir, "access.log"))
		return string(b)
	}
}

// With proxy_protocol, nginx (listen ... proxy_protocol) sees each client's
// own address and port, for every request of a kept-alive connection, for
// two clients at once, and for HTTP/2 clients: no target connection
// carries one client's header for another's request.
func TestProxyProtocolNginxTarget(t *testing.T) {
	port, accessLog := startNginxPP(t)
	ca := testpki.NewCA(t, "test")
	g := startGate(t, ca, fmt.Sprintf("  - {name: hq.example.com, target: 127.0.0.1, ports: {http: %s}, proxy_protocol: v2}", port), "")

	open := func(src string) (net.Conn, *bufio.Reader) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", g.http)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		return c, bufio.NewReader(c)
	}
	ask := func(c net.Conn, br *bufio.Reader, uri string) string {
		t.Helper()
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: hq.example.com\r\n\r\n", uri)
		resp, err := stdhttp.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return string(body)
	}
	a, ar := open("127.0.0.2")
	b, br := open("127.0.0.3")
	// Interleaved on two kept-alive connections.
	for i, step := range []struct {
		c  net.Conn
		br *bufio.Reader
	}{{a, ar}, {b, br}, {a, ar}, {b, br}} {
		uri := fmt.Sprintf("/r%d", i)
		if got, want := ask(step.c, step.br, uri), "pp="+step.c.LocalAddr().String(); got != want {
			t.Fatalf("request %d: nginx answered %q, want %q", i, got, want)
		}
		// nginx logs a request once it has answered it.
		want := fmt.Sprintf("PP %s %s\n", step.c.LocalAddr(), uri)
		for deadline := time.Now().Add(5 * time.Second); !strings.Contains(accessLog(), want) && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		if !strings.Contains(accessLog(), want) {
			t.Errorf("nginx's log lacks %q:\n%s", want, accessLog())
		}
	}

	// HTTP/2 over TLS goes through net/http's transport: the same header.
	h2 := g.clientFrom("127.0.0.4", true)
	for range 2 {
		resp, err := h2.Get("https://hq.example.com/h2")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || !strings.HasPrefix(string(body), "pp=127.0.0.4:") {
			t.Fatalf("HTTP/%d: nginx answered %q", resp.ProtoMajor, body)
		}
	}
	h2.CloseIdleConnections()
}
