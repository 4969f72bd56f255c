package h1

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
)

// TestRealClientRequests reads what a real client (curl) sends, in the
// forms phones' web UIs and provisioning scripts use, and checks that the
// strict parser reads every one of them and agrees with net/http: being
// strict must not refuse real clients.
func TestRealClientRequests(t *testing.T) {
	curl := testpeer.Program(t, "curl", "curl")
	for _, tc := range []struct {
		name string
		args []string
		body string // what the parser must read as the body
	}{
		{"GET", []string{"http://hq.example.com/PBX0/MY/index.htm?a=1"}, ""},
		{"HEAD", []string{"-I", "http://hq.example.com/PBX0/MY/"}, ""},
		{"form POST", []string{"-d", "user=alice&pw=secret", "http://hq.example.com/PBX0/MY/login"}, "user=alice&pw=secret"},
		{"chunked upload", []string{"-H", "Transfer-Encoding: chunked", "--data-binary", "@-", "http://hq.example.com/PBX0/APPS/up"}, "stdin-body"},
		{"HTTP/1.0", []string{"-0", "http://hq.example.com/"}, ""},
		{"basic auth and cookies", []string{"-u", "admin:pw", "-b", "s=1; t=2", "http://hq.example.com/x"}, ""},
		{"proxy form", []string{"-x", "http://PROXY", "http://hq.example.com/abs"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := capture(t, curl, tc.args, "stdin-body")
			br := bufio.NewReader(bytes.NewReader(raw))
			req, err := ReadRequest(br, 64<<10)
			if err != nil {
				t.Fatalf("curl's request refused: %v\n%q", err, raw)
			}
			body, err := io.ReadAll(NewBody(br, req.ContentLength))
			if err != nil || string(body) != tc.body {
				t.Fatalf("body %q, %v; want %q\n%q", body, err, tc.body, raw)
			}
			diffRequest(t, raw)
		})
	}
}

// capture runs curl with args against a listener on 127.0.0.1 and returns
// the bytes of its request: the head, then the body as far as it came
// before the answer. PROXY in an argument is replaced by the listener's
// address; otherwise curl is pointed at it with --resolve-like --connect-to.
func capture(t *testing.T, curl string, args []string, stdin string) []byte {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		var buf bytes.Buffer
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		tmp := make([]byte, 4096)
		for {
			n, err := c.Read(tmp)
			buf.Write(tmp[:n])
			if complete(buf.Bytes()) || err != nil {
				break
			}
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		got <- buf.Bytes()
	}()
	full := []string{"-sS", "-o", "/dev/null", "--max-time", "10"}
	proxied := false
	for _, a := range args {
		if strings.Contains(a, "PROXY") {
			proxied = true
		}
		full = append(full, strings.ReplaceAll(a, "PROXY", addr))
	}
	if !proxied {
		full = append(full, "--connect-to", "::"+addr)
	}
	cmd := exec.Command(curl, full...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("curl %q: %v\n%s", full, err, out)
	}
	return <-got
}

// complete reports whether b holds a whole request by net/http's reading.
func complete(b []byte) bool {
	br := bufio.NewReader(bytes.NewReader(b))
	req, err := ReadRequest(br, 64<<10)
	if err != nil {
		return bytes.Contains(b, []byte("\r\n\r\n")) && err != io.ErrUnexpectedEOF
	}
	_, err = io.ReadAll(NewBody(br, req.ContentLength))
	return err == nil
}
