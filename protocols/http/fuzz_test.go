package http

import (
	"bufio"
	"bytes"
	stdhttp "net/http"
	"testing"

	"github.com/gatehouse-pbx/gatehouse/protocols/http/h1"
)

// FuzzRequestHead checks the request loop's rewriting of a request head
// against any bytes a client may send: whatever h1 accepts is written to
// the target as exactly one request head that both a strict reader (h1)
// and net/http read the same way (method, target, Host, body length), with
// no hop-by-hop or forwarding field of the client's left in it.
func FuzzRequestHead(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",                                                                       // the plainest request
		"POST /x?y HTTP/1.1\r\nHost: a:80\r\nContent-Length: 3\r\n\r\nabc",                                        // a length
		"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",                              // chunked
		"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, X-A\r\nUpgrade: websocket\r\nX-A: 1\r\n\r\n",         // upgrade, a field named by Connection
		"GET http://a/c HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\nTE: trailers\r\n\r\n",                  // absolute form, forwarding fields
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: Host, X-Forwarded-For, X-Real-IP\r\nX-Real-IP: 1.1.1.1\r\n\r\n", // naming gatehouse's fields in Connection
		"OPTIONS * HTTP/1.0\r\nHost: a\r\n\r\n",                                                                   // asterisk form, HTTP/1.0
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		req, err := h1.ReadRequest(bufio.NewReader(bytes.NewReader(raw)), 64<<10)
		if err != nil || req.Method == stdhttp.MethodConnect || req.Host == "" {
			// Refused before anything is forwarded: an HTTP/1.0 request may
			// lack Host, and then names no service
			// (TestH1RefusalsAndUnreadableRequests).
			return
		}
		c := &h1conn{ip: "192.0.2.1", proto: "http"}
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		c.writeRequestHead(w, req)
		w.Flush()
		sent := out.Bytes()
		got, err := h1.ReadRequest(bufio.NewReader(bytes.NewReader(sent)), 64<<10)
		if err != nil {
			t.Fatalf("gatehouse cannot read what it sends: %v\n%q", err, sent)
		}
		br := bufio.NewReader(bytes.NewReader(sent))
		std, err := stdhttp.ReadRequest(br)
		if err != nil {
			t.Fatalf("net/http cannot read what gatehouse sends: %v\n%q", err, sent)
		}
		if br.Buffered() != 0 {
			t.Fatalf("more than one request head: %q", sent)
		}
		if got.Method != req.Method || got.Host != req.Host || got.ContentLength != req.ContentLength || got.Target != req.RequestURI() {
			t.Fatalf("sent %s %s %q %d for %s %s %q %d\n%q", got.Method, got.Target, got.Host, got.ContentLength,
				req.Method, req.RequestURI(), req.Host, req.ContentLength, sent)
		}
		if std.Method != req.Method || std.Host != req.Host || (req.ContentLength >= 0 && std.ContentLength != req.ContentLength) {
			t.Fatalf("net/http reads %s %q %d, gatehouse read %s %q %d\n%q", std.Method, std.Host, std.ContentLength,
				req.Method, req.Host, req.ContentLength, sent)
		}
		for _, k := range []string{"Keep-Alive", "Proxy-Authorization", "Proxy-Connection", "X-Forwarded-Host", "Forwarded"} {
			if len(std.Header[k]) > 0 {
				t.Fatalf("%s forwarded: %q", k, sent)
			}
		}
		if std.Header.Get("X-Forwarded-Proto") != "http" || std.Header.Get("X-Real-IP") != "192.0.2.1" ||
			len(std.Header["X-Real-Ip"]) != 1 {
			t.Fatalf("forwarding fields: %q", sent)
		}
		if xff := std.Header.Values("X-Forwarded-For"); len(xff) != 1 || !bytes.HasSuffix([]byte(xff[0]), []byte("192.0.2.1")) {
			t.Fatalf("X-Forwarded-For: %q", sent)
		}
	})
}
