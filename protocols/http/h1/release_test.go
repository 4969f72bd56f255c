package h1

import (
	"strings"
	"testing"
)

// A released request's memory serves the next one whole: nothing of the
// first is left in the second, and the first's strings stay as they were.
func TestReleaseReuses(t *testing.T) {
	a, err := ParseRequest("GET /a?x=1 HTTP/1.1\r\nHost: a.example.com\r\nX-First: one\r\nAccept: */*\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	host, path, first := a.Host, a.Path, a.Header[0].Value
	a.Release()
	a.Release() // twice: nothing
	b, err := ParseRequest("POST /b HTTP/1.0\r\nHost: b.example.com\r\nContent-Length: 3\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if b.Host != "b.example.com" || b.Path != "/b" || b.HasQuery || b.Minor != 0 || b.ContentLength != 3 || !b.Close {
		t.Fatalf("second request parsed as %+v", *b)
	}
	if len(b.Header) != 0 {
		t.Fatalf("second request has the first's fields: %v", b.Header)
	}
	if host != "a.example.com" || path != "/a" || first != "one" {
		t.Fatalf("the first request's strings changed: %q %q %q", host, path, first)
	}
	b.Release()

	r, err := ParseResponse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-One: 1\r\n\r\n", "GET")
	if err != nil {
		t.Fatal(err)
	}
	r.Release()
	r2, err := ParseResponse("HTTP/1.1 204 No Content\r\n\r\n", "GET")
	if err != nil {
		t.Fatal(err)
	}
	if r2.StatusCode != 204 || r2.ContentLength != -1 || r2.BodyLength != 0 || len(r2.Header) != 0 || r2.Close {
		t.Fatalf("second response parsed as %+v", *r2)
	}

	// A head with more fields than the pooled memory holds is not pooled.
	var big strings.Builder
	big.WriteString("GET / HTTP/1.1\r\nHost: h\r\n")
	for i := 0; i < inlineFields+2; i++ {
		big.WriteString("X-F: v\r\n")
	}
	big.WriteString("\r\n")
	c, err := ParseRequest(big.String())
	if err != nil {
		t.Fatal(err)
	}
	if c.alloc != nil {
		t.Fatal("a request of many fields in the pooled memory")
	}
	c.Release()
}

// A kept-alive request and its answer allocate nothing of their own once
// released (their heads' text is the caller's string here).
func TestReleasedParsesAllocateNothing(t *testing.T) {
	req := "GET /small HTTP/1.1\r\nHost: hq.example.com\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
	resp := "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\nContent-Length: 200\r\nConnection: keep-alive\r\n\r\n"
	allocs := testing.AllocsPerRun(1000, func() {
		r, err := ParseRequest(req)
		if err != nil {
			t.Fatal(err)
		}
		a, err := ParseResponse(resp, r.Method)
		if err != nil {
			t.Fatal(err)
		}
		a.Release()
		r.Release()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per released request and answer", allocs)
	}
}
