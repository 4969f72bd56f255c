package http

import (
	"bufio"
	"bytes"
	stdhttp "net/http"
	"testing"
)

// FuzzRequestHead checks the request loop's rewriting of a request head
// against any bytes a client may send: whatever net/http's parser accepts
// and checkRequest lets through is written to the target as exactly one
// request head that a target's parser reads the same way (method, Host,
// body length), with no hop-by-hop header of the client's left in it.
func FuzzRequestHead(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /x?y HTTP/1.1\r\nHost: a:80\r\nContent-Length: 3\r\n\r\nabc",
		"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, X-A\r\nUpgrade: websocket\r\nX-A: 1\r\n\r\n",
		"GET http://b/c HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\nTE: trailers\r\n\r\n",
		"OPTIONS * HTTP/1.0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		req, err := stdhttp.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return
		}
		if _, err := checkRequest(req); err != nil || req.Method == stdhttp.MethodConnect {
			return // refused before anything is forwarded
		}
		c := &h1conn{ip: "192.0.2.1", proto: "http"}
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		c.writeRequestHead(w, req)
		w.Flush()
		sent := out.String()
		br := bufio.NewReader(&out)
		got, err := stdhttp.ReadRequest(br)
		if err != nil {
			t.Fatalf("the target cannot read what gatehouse sends: %v\n%q", err, sent)
		}
		if br.Buffered() != 0 {
			t.Fatalf("more than one request head: %q", sent)
		}
		if got.Method != req.Method || got.Host != req.Host || got.ContentLength != req.ContentLength {
			t.Fatalf("the target reads %s %q %d, gatehouse read %s %q %d\n%q", got.Method, got.Host, got.ContentLength,
				req.Method, req.Host, req.ContentLength, sent)
		}
		for _, k := range []string{"Keep-Alive", "Proxy-Authorization", "Proxy-Connection", "Trailer", "X-Forwarded-Host", "Forwarded"} {
			if len(got.Header[k]) > 0 {
				t.Fatalf("%s forwarded: %q", k, sent)
			}
		}
		if got.Header.Get("X-Forwarded-Proto") != "http" {
			t.Fatalf("X-Forwarded-Proto: %q", sent)
		}
	})
}
