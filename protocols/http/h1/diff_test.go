package h1

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"testing"
)

// The differential tests hold gatehouse's parser against net/http's, which
// most Go targets run: where net/http refuses a message, so must h1; where
// both accept, they must agree on everything that decides where the
// message goes and where it ends.

// readBoth parses raw with both parsers and returns h1's reading with its
// body, or an error; t fails where the two disagree.
func diffRequest(t *testing.T, raw []byte) {
	t.Helper()
	std, stdErr := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
	var stdBody []byte
	if stdErr == nil {
		stdBody, stdErr = io.ReadAll(std.Body)
	}
	br := bufio.NewReader(bytes.NewReader(raw))
	req, err := ReadRequest(br, 64<<10)
	var body []byte
	if err == nil {
		body, err = io.ReadAll(NewBody(br, req.ContentLength))
	}
	if err != nil {
		return // refusing more than net/http does is the point
	}
	if stdErr != nil {
		t.Fatalf("h1 accepts what net/http refuses (%v):\n%q", stdErr, raw)
	}
	if std.Method != req.Method {
		t.Fatalf("method: net/http %q, h1 %q\n%q", std.Method, req.Method, raw)
	}
	if std.RequestURI != req.Target {
		t.Fatalf("target: net/http %q, h1 %q\n%q", std.RequestURI, req.Target, raw)
	}
	if std.Host != req.Host {
		t.Fatalf("host: net/http %q, h1 %q\n%q", std.Host, req.Host, raw)
	}
	stdChunked := len(std.TransferEncoding) > 0
	if stdChunked != (req.ContentLength == Chunked) || (!stdChunked && std.ContentLength != req.ContentLength) {
		t.Fatalf("framing: net/http cl=%d te=%v, h1 cl=%d\n%q", std.ContentLength, std.TransferEncoding, req.ContentLength, raw)
	}
	if !bytes.Equal(stdBody, body) {
		t.Fatalf("body: net/http %q, h1 %q\n%q", stdBody, body, raw)
	}
	if std.Close != req.Close {
		t.Fatalf("close: net/http %v, h1 %v\n%q", std.Close, req.Close, raw)
	}
	if req.Form == OriginForm && std.URL.RawQuery != req.Query {
		t.Fatalf("query: net/http %q, h1 %q\n%q", std.URL.RawQuery, req.Query, raw)
	}
}

func diffResponse(t *testing.T, raw []byte, method string) {
	t.Helper()
	stdReq := &http.Request{Method: method}
	std, stdErr := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), stdReq)
	var stdBody []byte
	if stdErr == nil {
		stdBody, stdErr = io.ReadAll(std.Body)
	}
	br := bufio.NewReader(bytes.NewReader(raw))
	resp, err := ReadResponse(br, 64<<10, method)
	var body []byte
	if err == nil {
		body, err = io.ReadAll(NewBody(br, resp.BodyLength))
	}
	if err != nil {
		return
	}
	if stdErr != nil {
		t.Fatalf("h1 accepts what net/http refuses (%v):\n%q", stdErr, raw)
	}
	if std.StatusCode != resp.StatusCode {
		t.Fatalf("status: net/http %d, h1 %d\n%q", std.StatusCode, resp.StatusCode, raw)
	}
	if !bytes.Equal(stdBody, body) {
		t.Fatalf("body: net/http %q, h1 %q\n%q", stdBody, body, raw)
	}
}

// requestSeeds are real requests (curl, Chromium, myPBX's WebSocket, an
// HTTP/1.0 client) and the smuggling tricks the parser must refuse.
var requestSeeds = []string{
	// curl 7.88
	"GET /PBX0/MY/index.htm HTTP/1.1\r\nHost: hq.example.com\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n",
	// Chromium, keep-alive with cookies
	"GET /PBX0/APPS/app.htm?x=1&y=%20 HTTP/1.1\r\nHost: hq.example.com:8443\r\nConnection: keep-alive\r\nCookie: a=b; c=d\r\nAccept-Language: de-DE,de;q=0.9\r\n\r\n",
	// WebSocket upgrade
	"GET /PBX0/WEBSOCKET HTTP/1.1\r\nHost: hq\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
	// bodies
	"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
	"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;n=v\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n",
	"POST /x HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi",
	"GET http://a/b?c HTTP/1.1\r\nHost: a\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
	// refused
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\nGET /ADMIN HTTP/1.1\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
	"GET / HTTP/1.1\nHost: a\n\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n",
	"GET http://b/ HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
	"GET / HTTP/1.1\r\n\r\n",
	"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
}

func FuzzRequestDifferential(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) { diffRequest(t, raw) })
}

var responseSeeds = []string{
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	"HTTP/1.0 200 OK\r\n\r\nuntil close",
	"HTTP/1.1 204 No Content\r\n\r\n",
	"HTTP/1.1 304 Not Modified\r\nContent-Length: 42\r\n\r\n",
	"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
}

func FuzzResponseDifferential(f *testing.F) {
	for _, s := range responseSeeds {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, raw []byte, head bool) {
		m := "GET"
		if head {
			m = "HEAD"
		}
		diffResponse(t, raw, m)
	})
}
