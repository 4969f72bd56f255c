package http

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	stdhttp "net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
	"github.com/gatehouse-pbx/gatehouse/proxy/proxytest"
)

// The smuggling suite sends, through gatehouse, the request tricks that
// make two HTTP parsers disagree, to two real targets: nginx (strict, as
// good web servers are) and Perl's HTTP::Daemon (tolerant, as the embedded
// web servers of PBXs and devices are: it reads "Transfer-Encoding :
// chunked", folded lines and repeated lengths). What each target actually
// received is read from its own log. Every trick hides a request for
// /PBX0/ADMIN, which the allowed-URL list refuses: it must never reach a
// target, and no client may ever get the answer to another's request.

// targetPeer is a real HTTP server that logs every request it read as
// "REQ <conn> <method> <uri> host=<host> len=<n>".
type targetPeer struct {
	name string
	port string
	log  func() string
}

func (p *targetPeer) requests() []string {
	var out []string
	for _, l := range strings.Split(p.log(), "\n") {
		if strings.HasPrefix(l, "REQ ") {
			out = append(out, l)
		}
	}
	return out
}

func startTolerant(t *testing.T) *targetPeer {
	perl := testpeer.Program(t, "perl", "perl")
	if err := exec.Command(perl, "-MHTTP::Daemon", "-e", "1").Run(); err != nil {
		msg := "Perl's HTTP::Daemon is not installed (Debian package libhttp-daemon-perl; .ci/run installs it)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	port := fmt.Sprint(testpeer.FreePort(t))
	log := &testpeer.Log{}
	cmd := exec.Command(perl, "testdata/tolerant.pl", port)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The daemon forks a child per connection; they end with theirs.
		cmd.Process.Kill()
		cmd.Wait()
	})
	testpeer.WaitListening(t, "127.0.0.1:"+port)
	return &targetPeer{name: "HTTP::Daemon", port: port, log: log.String}
}

func startNginx(t *testing.T) *targetPeer {
	port := fmt.Sprint(testpeer.FreePort(t))
	dir := testpeer.Nginx(t, `
	log_format req 'REQ $connection $request_method $request_uri host=$http_host len=$content_length';
	access_log @DIR@/access.log req;
	keepalive_requests 100000;
	server {
		listen 127.0.0.1:`+port+`;
		location / { return 200 "nginx $request_method $request_uri"; }
	}`)
	testpeer.WaitListening(t, "127.0.0.1:"+port)
	return &targetPeer{name: "nginx", port: port, log: func() string {
		b, _ := os.ReadFile(filepath.Join(dir, "access.log"))
		return string(b)
	}}
}

// smuggled is the request every trick hides.
const smuggled = "GET /PBX0/ADMIN HTTP/1.1\r\nHost: hq.example.com\r\n\r\n"

type smuggleCase struct {
	name string
	raw  string
	// status of each answer the client must get, in order; after the last
	// the connection must be closed when closes is set.
	status []int
	closes bool
	// reach are the requests ("METHOD URI") the target may have received.
	reach []string
}

var smuggleCases = []smuggleCase{
	{name: "CL.TE, whitespace before colon",
		raw:    "POST /PBX0/MY HTTP/1.1\r\nHost: hq.example.com\r\nContent-Length: " + fmt.Sprint(5+len(smuggled)) + "\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + smuggled,
		status: []int{400}, closes: true},
	{name: "TE.CL, both fields",
		raw:    "POST /PBX0/MY HTTP/1.1\r\nHost: hq.example.com\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n" + fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(smuggled), smuggled),
		status: []int{400}, closes: true},
	{name: "obs-fold Transfer-Encoding",
		raw:    "POST /PBX0/MY HTTP/1.1\r\nHost: hq.example.com\r\nContent-Length: " + fmt.Sprint(5+len(smuggled)) + "\r\nX-Pad: 1\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n" + smuggled,
		status: []int{400}, closes: true},
	{name: "repeated Content-Length",
		raw:    "POST /PBX0/MY HTTP/1.1\r\nHost: hq.example.com\r\nContent-Length: 0\r\nContent-Length: " + fmt.Sprint(len(smuggled)) + "\r\n\r\n" + smuggled,
		status: []int{400}, closes: true},
	{name: "coding list",
		raw:    "POST /PBX0/MY HTTP/1.1\r\nHost: hq.example.com\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n" + smuggled,
		status: []int{400}, closes: true},
	{name: "chunked on HTTP/1.0",
		raw:    "POST /PBX0/MY HTTP/1.0\r\nHost: hq.example.com\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
		status: []int{400}, closes: true},
	{name: "chunk size with a space",
		raw:    "POST /PBX0/MY HTTP/1.1\r\nHost: hq.example.com\r\nTransfer-Encoding: chunked\r\n\r\n0 \r\n\r\n" + smuggled,
		status: []int{400}, closes: true, reach: []string{"POST /PBX0/MY"}},
	{name: "chunk size of 17 digits",
		raw:    "POST /PBX0/MY HTTP/1.1\r\nHost: hq.example.com\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000000\r\n\r\n" + smuggled,
		status: []int{400}, closes: true, reach: []string{"POST /PBX0/MY"}},
	{name: "bare LF line endings",
		raw:    "GET /PBX0/MY/x HTTP/1.1\nHost: hq.example.com\nContent-Length: " + fmt.Sprint(len(smuggled)) + "\n\n" + smuggled,
		status: []int{400}, closes: true},
	{name: "NUL in a value",
		raw:    "GET /PBX0/MY/x HTTP/1.1\r\nHost: hq.example.com\r\nX-A: 1\x00\r\n\r\n" + smuggled,
		status: []int{400}, closes: true},
	{name: "two Hosts",
		raw:    "GET /PBX0/ADMIN HTTP/1.1\r\nHost: hq.example.com\r\nHost: other.example.com\r\n\r\n",
		status: []int{400}, closes: true},
	{name: "absolute form naming another authority",
		raw:    "GET http://other.example.com/PBX0/ADMIN HTTP/1.1\r\nHost: hq.example.com\r\n\r\n",
		status: []int{400}, closes: true},
	{name: "body that looks like a request",
		raw:    "POST /PBX0/MY/form HTTP/1.1\r\nHost: hq.example.com\r\nContent-Length: " + fmt.Sprint(len(smuggled)) + "\r\n\r\n" + smuggled,
		status: []int{200}, reach: []string{"POST /PBX0/MY/form"}},
	{name: "chunked body that looks like a request",
		raw:    "POST /PBX0/MY/form HTTP/1.1\r\nHost: hq.example.com\r\nTransfer-Encoding: chunked\r\n\r\n" + fmt.Sprintf("%x;ext=1\r\n%s\r\n0\r\nX-Sum: 1\r\n\r\n", len(smuggled), smuggled),
		status: []int{200}, reach: []string{"POST /PBX0/MY/form"}},
	{name: "pipelined refused URL",
		raw:    "GET /PBX0/MY/a HTTP/1.1\r\nHost: hq.example.com\r\n\r\n" + smuggled,
		status: []int{200, 403}, closes: true, reach: []string{"GET /PBX0/MY/a"}},
	{name: "pipelined other Host",
		raw:    "GET /PBX0/MY/b HTTP/1.1\r\nHost: hq.example.com\r\n\r\nGET /PBX0/ADMIN HTTP/1.1\r\nHost: nobody.example.com\r\n\r\n",
		status: []int{200, 421}, closes: true, reach: []string{"GET /PBX0/MY/b"}},
	{name: "path parameter on a dot segment",
		raw:    "GET /PBX0/MY/..;/ADMIN HTTP/1.1\r\nHost: hq.example.com\r\n\r\n",
		status: []int{403}, closes: true},
	{name: "encoded dot segment",
		raw:    "GET /PBX0/MY/%2e%2e/ADMIN HTTP/1.1\r\nHost: hq.example.com\r\n\r\n",
		status: []int{403}, closes: true},
	{name: "double-encoded dot segment",
		raw:    "GET /PBX0/MY/%252e%252e/ADMIN HTTP/1.1\r\nHost: hq.example.com\r\n\r\n",
		status: []int{403}, closes: true},
	{name: "backslashes",
		raw:    "GET /PBX0/MY\\..\\ADMIN HTTP/1.1\r\nHost: hq.example.com\r\n\r\n",
		status: []int{403}, closes: true},
}

func TestSmugglingAgainstRealTargets(t *testing.T) {
	for _, start := range []func(*testing.T) *targetPeer{startNginx, startTolerant} {
		peer := start(t)
		t.Run(peer.name, func(t *testing.T) {
			ca := testpki.NewCA(t, "test")
			g := startGate(t, ca, fmt.Sprintf(`  - name: hq.example.com
    target: 127.0.0.1
    ports: {http: %s}
    allow:
      urls: [/PBX0/MY]`, peer.port), "")
			probe := 0
			for _, tc := range smuggleCases {
				t.Run(tc.name, func(t *testing.T) {
					before := len(peer.requests())
					attack := proxytest.DialFrom(t, "127.0.0.2", g.http)
					attack.Write([]byte(tc.raw))
					br := bufio.NewReader(attack)
					for i, want := range tc.status {
						resp, err := stdhttp.ReadResponse(br, nil)
						if err != nil {
							t.Fatalf("answer %d: %v", i+1, err)
						}
						body, _ := io.ReadAll(resp.Body)
						if resp.StatusCode != want {
							t.Fatalf("answer %d: %d %q, want %d", i+1, resp.StatusCode, body, want)
						}
					}
					if tc.closes && !closedConn(attack, br) {
						t.Fatal("the connection stays open after a refusal")
					}
					attack.Close()
					// Another client, from another address, gets the answer to
					// its own request: nothing was left on a pooled connection.
					probe++
					path := fmt.Sprintf("/PBX0/MY/probe-%d", probe)
					c := proxytest.DialFrom(t, "127.0.0.3", g.http)
					defer c.Close()
					fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: hq.example.com\r\n\r\n", path)
					resp, err := stdhttp.ReadResponse(bufio.NewReader(c), nil)
					if err != nil {
						t.Fatal(err)
					}
					body, _ := io.ReadAll(resp.Body)
					if resp.StatusCode != 200 || !strings.HasSuffix(string(body), "GET "+path) {
						t.Fatalf("the next client got %d %q for %s", resp.StatusCode, body, path)
					}
					checkReached(t, peer, before, append(tc.reach, "GET "+path))
				})
			}
		})
	}
}

var reqLine = regexp.MustCompile(`^REQ \S+ (\S+) (\S+) `)

// checkReached fails t if the target received, since its request number
// before, anything but allowed (each "METHOD URI" at most once).
func checkReached(t *testing.T, peer *targetPeer, before int, allowed []string) {
	t.Helper()
	var got []string
	// The target logs after it has answered: wait for the probe's line.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		got = peer.requests()[before:]
		if len(got) > 0 && strings.Contains(got[len(got)-1], allowed[len(allowed)-1]+" ") || time.Now().After(deadline) {
			break
		}
	}
	time.Sleep(50 * time.Millisecond) // anything smuggled would be logged by now
	got = peer.requests()[before:]
	left := append([]string(nil), allowed...)
	for _, l := range got {
		m := reqLine.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("unexpected log line %q", l)
		}
		seen := m[1] + " " + m[2]
		ok := false
		for i, a := range left {
			if a == seen {
				left = append(left[:i], left[i+1:]...)
				ok = true
				break
			}
		}
		if !ok || strings.Contains(seen, "ADMIN") {
			t.Fatalf("%s received %q, which gatehouse did not forward as such (all: %q)", peer.name, seen, got)
		}
	}
}

func closedConn(c net.Conn, br *bufio.Reader) bool {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := br.ReadByte()
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// TestHTTP2SmugglingAgainstRealTargets sends the same tricks in HTTP/2
// frames, which gatehouse forwards as HTTP/1.1 to the target: fields that
// carry CR LF, connection-specific fields, a length that disagrees with the
// DATA, paths that resolve elsewhere.
func TestHTTP2SmugglingAgainstRealTargets(t *testing.T) {
	for _, start := range []func(*testing.T) *targetPeer{startNginx, startTolerant} {
		peer := start(t)
		t.Run(peer.name, func(t *testing.T) {
			ca := testpki.NewCA(t, "test")
			g := startGate(t, ca, fmt.Sprintf(`  - name: hq.example.com
    target: 127.0.0.1
    ports: {http: %s}
    allow:
      urls: [/PBX0/MY]
  - name: kiosk.example.com
    target: 127.0.0.1
    ports: {http: %[1]s}
    allow:
      urls: [/PBX0/MY]`, peer.port), "")
			for _, tc := range []struct {
				name   string
				fields [][2]string
				data   string
				ok     bool   // the request reaches the target (as "reach")
				reach  string // METHOD URI
				status int    // when answered with a status rather than reset
			}{
				{name: "CR LF in a value", fields: [][2]string{{"x-a", "1\r\nTransfer-Encoding: chunked"}}},
				{name: "transfer-encoding", fields: [][2]string{{"transfer-encoding", "chunked"}}, data: "0\r\n\r\n" + smuggled},
				{name: "connection", fields: [][2]string{{"connection", "keep-alive"}}},
				// The head may have left before the DATA showed the length
				// false; the excess never does.
				{name: "length shorter than DATA", fields: [][2]string{{"content-length", "5"}}, data: "hello" + smuggled,
					ok: true, reach: "POST /PBX0/MY/h2"},
				{name: "upper-case field name", fields: [][2]string{{"Transfer-Encoding", "chunked"}}},
				{name: "path parameter", fields: [][2]string{{":path", "/PBX0/MY/..;/ADMIN"}}, status: 403},
				{name: "encoded dots", fields: [][2]string{{":path", "/PBX0/MY/%2e%2e/ADMIN"}}, status: 403},
				{name: "body that looks like a request", fields: [][2]string{{"content-length", fmt.Sprint(len(smuggled))}},
					data: smuggled, ok: true, reach: "POST /PBX0/MY/h2", status: 200},
				// net/http's HTTP/2 server passes any :authority; gatehouse
				// holds it to HTTP/1's Host rule. KELVIN SIGN lowers to "k":
				// it was routed to kiosk.example.com.
				{name: "authority not ASCII", fields: [][2]string{{":authority", "\u212Aiosk.example.com"}}, status: 400},
				{name: "authority with two ports", fields: [][2]string{{":authority", "hq.example.com:443:80"}}, status: 400},
				{name: "Host field naming another host", fields: [][2]string{{"host", "kiosk.example.com"}}, status: 400},
				{name: "Host field naming the authority", fields: [][2]string{{"host", "HQ.example.com"}},
					ok: true, reach: "POST /PBX0/MY/h2", status: 200},
			} {
				t.Run(tc.name, func(t *testing.T) {
					before := len(peer.requests())
					status := h2Raw(t, g, tc.fields, tc.data)
					if tc.status != 0 && status != tc.status {
						t.Fatalf("status %d, want %d", status, tc.status)
					}
					if tc.status == 0 && status >= 200 && status < 300 {
						t.Fatalf("answered %d, want a refusal", status)
					}
					var allowed []string
					if tc.ok {
						allowed = []string{tc.reach}
					}
					// A probe marks the end of what this case made reach the target.
					code, body := get(t, g.client, "http://hq.example.com/PBX0/MY/h2probe")
					if code != 200 {
						t.Fatalf("probe: %d %q", code, body)
					}
					checkReached(t, peer, before, append(allowed, "GET /PBX0/MY/h2probe"))
				})
			}
		})
	}
}

// h2Raw sends one POST /PBX0/MY/h2 over HTTP/2 with extra fields (a
// ":path" or ":authority" replaces the request's) and data, and returns the status of the
// answer, or 0 when the stream or connection was reset.
func h2Raw(t *testing.T, g *gate, fields [][2]string, data string) int {
	t.Helper()
	conn, err := tls.Dial("tcp", g.https, &tls.Config{RootCAs: g.ca.Pool(), ServerName: "hq.example.com", NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, http2.ClientPreface)
	fr := http2.NewFramer(conn, conn)
	fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	path, authority := "/PBX0/MY/h2", "hq.example.com"
	for _, f := range fields {
		switch f[0] {
		case ":path":
			path = f[1]
		case ":authority":
			authority = f[1]
		}
	}
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "https"}, {":authority", authority}, {":path", path}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	for _, f := range fields {
		if f[0] != ":path" && f[0] != ":authority" {
			enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true, EndStream: data == ""})
	if data != "" {
		fr.WriteData(1, true, []byte(data))
	}
	dec := hpack.NewDecoder(4096, nil)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return 0
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.HeadersFrame:
			hfs, err := dec.DecodeFull(f.HeaderBlockFragment())
			if err != nil {
				t.Fatal(err)
			}
			for _, hf := range hfs {
				if hf.Name == ":status" {
					var code int
					fmt.Sscan(hf.Value, &code)
					return code
				}
			}
		case *http2.RSTStreamFrame:
			return 0
		case *http2.GoAwayFrame:
			// A graceful GOAWAY (gatehouse closes after a refusal) still
			// lets stream 1 finish.
			if f.ErrCode != http2.ErrCodeNo || f.LastStreamID < 1 {
				return 0
			}
		}
	}
}
