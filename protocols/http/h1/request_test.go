package h1

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReadRequest(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		want      error  // nil: accepted
		check     string // for accepted: "method target host cl close"
		body      string
		bodyErr   error
	}{
		{name: "curl", raw: requestSeeds[0], check: "GET /PBX0/MY/index.htm hq.example.com 0 false"},
		{name: "chromium keep-alive", raw: requestSeeds[1], check: "GET /PBX0/APPS/app.htm?x=1&y=%20 hq.example.com:8443 0 false"},
		{name: "websocket", raw: requestSeeds[2], check: "GET /PBX0/WEBSOCKET hq 0 false"},
		{name: "length body", raw: requestSeeds[3], check: "POST /x a 5 false", body: "hello"},
		{name: "chunked body", raw: requestSeeds[4], check: "POST /x a -1 false", body: "hello"},
		{name: "chunk extension and trailer", raw: requestSeeds[5], check: "POST /x a -1 false", body: "hello"},
		{name: "HTTP/1.0 without Host closes", raw: requestSeeds[6], check: "POST /x  2 true", body: "hi"},
		{name: "absolute form with agreeing Host", raw: requestSeeds[7], check: "GET http://a/b?c a 0 false"},
		{name: "asterisk", raw: requestSeeds[8], check: "OPTIONS * a 0 false"},
		{name: "leading empty line", raw: "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", want: ErrRequestLine},
		{name: "connection close", raw: "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", check: "GET / a 0 true"},
		{name: "HTTP/1.0 keep-alive", raw: "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", check: "GET /  0 false"},
		{name: "obs-text in value", raw: "GET / HTTP/1.1\r\nHost: a\r\nX-Name: M\xfcller\r\n\r\n", check: "GET / a 0 false"},

		{name: "whitespace before colon (CL.TE)", raw: requestSeeds[9], want: ErrFieldName},
		{name: "CL and TE", raw: requestSeeds[10], want: ErrFramingConflict},
		{name: "obs-fold", raw: requestSeeds[11], want: ErrObsFold},
		{name: "bare LF", raw: requestSeeds[12], want: ErrLineEnding},
		{name: "bare CR in value", raw: requestSeeds[13], want: ErrLineEnding},
		{name: "repeated Content-Length", raw: requestSeeds[14], want: ErrContentLength},
		{name: "signed Content-Length", raw: requestSeeds[15], want: ErrContentLength},
		{name: "list Content-Length", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello", want: ErrContentLength},
		{name: "coding list", raw: requestSeeds[16], want: ErrTransferEncoding},
		{name: "gzip then chunked", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", want: ErrTransferEncoding},
		{name: "TE twice", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", want: ErrTransferEncoding},
		{name: "TE on HTTP/1.0", raw: requestSeeds[17], want: ErrTransferEncoding},
		{name: "absolute form, other Host", raw: requestSeeds[21], want: ErrHostMismatch},
		{name: "two Hosts", raw: requestSeeds[22], want: ErrHost},
		{name: "no Host on 1.1", raw: requestSeeds[23], want: ErrHost},
		{name: "empty Host on 1.1", raw: "GET / HTTP/1.1\r\nHost: \r\n\r\n", want: ErrHost},
		{name: "userinfo in Host", raw: "GET / HTTP/1.1\r\nHost: evil@a\r\n\r\n", want: ErrHost},
		{name: "fragment", raw: requestSeeds[24], want: ErrTarget},
		{name: "double space", raw: requestSeeds[25], want: ErrRequestLine},
		{name: "HTTP/2.0 on the wire", raw: requestSeeds[26], want: ErrVersion},
		{name: "NUL in name", raw: "GET / HTTP/1.1\r\nHost: a\r\nX\x00: 1\r\n\r\n", want: ErrFieldName},
		{name: "NUL in value", raw: "GET / HTTP/1.1\r\nHost: a\r\nX: 1\x00\r\n\r\n", want: ErrFieldValue},
		{name: "DEL in value", raw: "GET / HTTP/1.1\r\nHost: a\r\nX: 1\x7f\r\n\r\n", want: ErrFieldValue},
		{name: "invalid name char", raw: "GET / HTTP/1.1\r\nHost: a\r\nX(y): 1\r\n\r\n", want: ErrFieldName},
		{name: "no colon", raw: "GET / HTTP/1.1\r\nHost: a\r\nXy\r\n\r\n", want: ErrFieldName},
		{name: "bad percent in path", raw: "GET /a%zz HTTP/1.1\r\nHost: a\r\n\r\n", want: ErrTarget},
		{name: "asterisk on GET", raw: "GET * HTTP/1.1\r\nHost: a\r\n\r\n", want: ErrTarget},
		{name: "space in target", raw: "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", want: ErrRequestLine},
		{name: "head too large", raw: "GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("a", 70<<10) + "\r\n\r\n", want: ErrHeadTooLarge},

		{name: "chunk size with trailing space", raw: requestSeeds[18], check: "POST / a -1 false", bodyErr: ErrChunk},
		{name: "negative chunk size", raw: requestSeeds[19], check: "POST / a -1 false", bodyErr: ErrChunk},
		{name: "17 hex digits", raw: requestSeeds[20], check: "POST / a -1 false", bodyErr: ErrChunk},
		{name: "16 hex digits overflowing", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n", check: "POST / a -1 false", bodyErr: ErrChunk},
		{name: "0x prefix", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", check: "POST / a -1 false", bodyErr: ErrChunk},
		{name: "no CRLF after chunk data", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n0\r\n\r\n", check: "POST / a -1 false", bodyErr: ErrChunk},
		{name: "LF only after size", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", check: "POST / a -1 false", bodyErr: ErrChunk},
		{name: "long extension", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;" + strings.Repeat("x", 300) + "\r\nhello\r\n0\r\n\r\n", check: "POST / a -1 false", bodyErr: ErrChunk},
		{name: "body cut short", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nhello", check: "POST / a 9 false", bodyErr: io.ErrUnexpectedEOF},
		{name: "obs-fold in trailer", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\r\n 2\r\n\r\n", check: "POST / a -1 false", bodyErr: ErrTrailer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// As it arrives whole, after a first byte on its own (the
			// request loop's first read), and byte by byte: the same
			// reading every time.
			for _, shape := range []string{"whole", "first byte", "byte by byte"} {
				var r io.Reader = strings.NewReader(tc.raw)
				switch shape {
				case "first byte":
					r = io.MultiReader(strings.NewReader(tc.raw[:1]), strings.NewReader(tc.raw[1:]))
				case "byte by byte":
					r = iotest.OneByteReader(r)
				}
				req, err := ReadRequest(bufio.NewReaderSize(r, 4096), 64<<10)
				if !errors.Is(err, tc.want) {
					t.Fatalf("%s: ReadRequest: %v, want %v", shape, err, tc.want)
				}
				if err == nil && req.Method+" "+req.Target+" "+req.Host+" "+itoa(req.ContentLength)+" "+btoa(req.Close) != tc.check {
					t.Errorf("%s: read %+v, want %q", shape, req, tc.check)
				}
			}
			br := bufio.NewReaderSize(strings.NewReader(tc.raw), 4096)
			req, err := ReadRequest(br, 64<<10)
			if err != nil {
				return
			}
			got := strings.Join([]string{req.Method, req.Target, req.Host, itoa(req.ContentLength), btoa(req.Close)}, " ")
			if got != tc.check {
				t.Errorf("read %q, want %q", got, tc.check)
			}
			body, err := io.ReadAll(NewBody(br, req.ContentLength))
			if !errors.Is(err, tc.bodyErr) {
				t.Fatalf("body: %v, want %v", err, tc.bodyErr)
			}
			if err == nil && string(body) != tc.body {
				t.Errorf("body %q, want %q", body, tc.body)
			}
			diffRequest(t, []byte(tc.raw))
		})
	}
}

func TestReadResponse(t *testing.T) {
	for _, tc := range []struct {
		raw, method string
		want        error
		code        int
		bodyLen     int64
		close       bool
	}{
		{raw: responseSeeds[0], method: "GET", code: 200, bodyLen: 5},
		{raw: responseSeeds[1], method: "GET", code: 200, bodyLen: Chunked},
		{raw: responseSeeds[2], method: "GET", code: 200, bodyLen: UntilClose, close: true},
		{raw: responseSeeds[3], method: "GET", code: 204, bodyLen: 0},
		{raw: responseSeeds[4], method: "GET", code: 304, bodyLen: 0},
		{raw: responseSeeds[5], method: "GET", code: 200, bodyLen: 0},
		{raw: responseSeeds[6], method: "GET", code: 101, bodyLen: 0},
		{raw: "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n", method: "HEAD", code: 200, bodyLen: 0},
		{raw: responseSeeds[7], method: "GET", want: ErrFramingConflict},
		{raw: responseSeeds[8], method: "GET", want: ErrContentLength},
		{raw: responseSeeds[9], method: "GET", want: ErrFieldName},
		{raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", method: "GET", want: ErrTransferEncoding},
		{raw: "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", method: "GET", want: ErrTransferEncoding},
		{raw: "HTTP/1.1 2000 OK\r\n\r\n", method: "GET", want: ErrStatusLine},
		{raw: "HTTP/1.1 200 OK\nContent-Length: 0\n\n", method: "GET", want: ErrLineEnding},
		{raw: "HTTP/1.1 200 O\x01K\r\n\r\n", method: "GET", want: ErrStatusLine},
		{raw: "ICY 200 OK\r\n\r\n", method: "GET", want: ErrStatusLine},
	} {
		br := bufio.NewReader(strings.NewReader(tc.raw))
		resp, err := ReadResponse(br, 64<<10, tc.method)
		if !errors.Is(err, tc.want) {
			t.Errorf("%q: %v, want %v", tc.raw, err, tc.want)
			continue
		}
		if err != nil {
			continue
		}
		if resp.StatusCode != tc.code || resp.BodyLength != tc.bodyLen || resp.Close != tc.close {
			t.Errorf("%q: code %d body %d close %v", tc.raw, resp.StatusCode, resp.BodyLength, resp.Close)
		}
		diffResponse(t, []byte(tc.raw), tc.method)
	}
}

func itoa(n int64) string {
	if n < 0 {
		return "-" + itoa(-n)
	}
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

func btoa(b bool) string {
	if b {
		return "true"
	}
	return "false"
}
