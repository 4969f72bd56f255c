package h1

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
)

// The parser against net/http's on a Chromium request head, as the
// HTTP/1.x loop reads one per request: h1 must not cost the loop its
// keep-alive throughput.
const chromiumHead = "GET /PBX0/APPS/app.htm?x=1 HTTP/1.1\r\nHost: hq.example.com\r\nConnection: keep-alive\r\n" +
	"sec-ch-ua: \"Chromium\";v=\"156\"\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/156.0 Safari/537.36\r\n" +
	"Accept: text/html,application/xhtml+xml\r\nAccept-Encoding: gzip, deflate, br\r\nAccept-Language: de-DE,de;q=0.9\r\n" +
	"Cookie: session=0123456789abcdef\r\n\r\n"

func BenchmarkReadRequest(b *testing.B) {
	r := strings.NewReader(chromiumHead)
	br := bufio.NewReaderSize(r, 4096)
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(chromiumHead)
		br.Reset(r)
		if _, err := ReadRequest(br, 64<<10); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNetHTTPReadRequest(b *testing.B) {
	r := strings.NewReader(chromiumHead)
	br := bufio.NewReaderSize(r, 4096)
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(chromiumHead)
		br.Reset(r)
		if _, err := http.ReadRequest(br); err != nil {
			b.Fatal(err)
		}
	}
}
