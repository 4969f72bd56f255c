package http

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	stdhttp "net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
)

// A response body framed by Content-Length of at least spliceMin moves
// between plain sockets with splice(2) (spliceResponse): the same bytes,
// exactly as many as framed, on a connection that keeps serving.

// bigTarget serves /big/N: N pseudo-random bytes with Content-Length, the
// same bytes for the same N.
func bigTarget(t *testing.T) string {
	srv := httptest.NewServer(stdhttp.HandlerFunc(func(w stdhttp.ResponseWriter, r *stdhttp.Request) {
		n, err := strconv.Atoi(r.URL.Path[len("/big/"):])
		if err != nil {
			stdhttp.Error(w, "bad size", 400)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(n))
		io.Copy(w, io.LimitReader(rand.NewChaCha8([32]byte{byte(n)}), int64(n)))
	}))
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	return port
}

func bigBody(n int) [32]byte {
	h := sha256.New()
	io.Copy(h, io.LimitReader(rand.NewChaCha8([32]byte{byte(n)}), int64(n)))
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

func TestH1BigBodiesSpliced(t *testing.T) {
	port := bigTarget(t)
	g := startGate(t, testpki.NewCA(t, "test"), fmt.Sprintf(echoSvc, port), "")
	before := splicedBytes.Load()
	// On one connection: below the threshold (copied), above it, a small
	// one after a spliced one (the connection still frames right), over
	// several splice rounds; then the same over TLS (never spliced).
	sizes := []int{spliceMin - 1, spliceMin, 100, 3*spliceChunk + 12345, 1 << 20}
	var want int64
	for _, base := range []string{"http://hq.example.com", "https://hq.example.com"} {
		for _, n := range sizes {
			resp, err := g.client.Get(fmt.Sprintf("%s/big/%d", base, n))
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			got, err := io.Copy(h, resp.Body)
			resp.Body.Close()
			if err != nil || got != int64(n) || !bytes.Equal(h.Sum(nil), func() []byte { s := bigBody(n); return s[:] }()) {
				t.Fatalf("%s %d bytes: got %d (%v), or other bytes", base, n, got, err)
			}
			if base == "http://hq.example.com" && n >= spliceMin {
				want += int64(n)
			}
		}
	}
	if got := splicedBytes.Load() - before; got < want/2 || got > want {
		t.Fatalf("%d bytes spliced, want up to %d (the plain bodies of spliceMin and more, less what came buffered with the head)", got, want)
	}
}

// TestH1SplicedBodyCutShort: a target that sends less than its
// Content-Length and closes: the client's connection is closed before
// the framed end (it cannot learn otherwise), and is not kept.
func TestH1SplicedBodyCutShort(t *testing.T) {
	addr := testpeer.Serve(t, "127.0.0.1:0", func(c net.Conn) {
		c.Read(make([]byte, 4096))
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", 4<<20)
		time.Sleep(50 * time.Millisecond) // the head alone first: the body is spliced
		c.Write(make([]byte, 1<<20))
	})
	_, port, _ := net.SplitHostPort(addr)
	g := startGate(t, testpki.NewCA(t, "test"), fmt.Sprintf(echoSvc, port), "")
	before := splicedBytes.Load()
	resp, err := g.client.Get("http://hq.example.com/short")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil || got >= 4<<20 {
		t.Fatalf("read %d bytes, %v: want the connection cut before the framed end", got, err)
	}
	if splicedBytes.Load() == before {
		t.Fatal("the body was not spliced: this test covers nothing")
	}
}

// TestSplicedNginxToCurl: real peers on both ends of the splice: nginx
// serving a file (sendfile) and curl fetching it twice on one kept-alive
// connection through gatehouse; curl gets the file's bytes both times.
func TestSplicedNginxToCurl(t *testing.T) {
	curl := testpeer.Program(t, "curl", "curl")
	root := t.TempDir()
	file := make([]byte, 20<<20+7)
	rand.NewChaCha8([32]byte{7}).Read(file)
	if err := os.WriteFile(filepath.Join(root, "firmware.bin"), file, 0o644); err != nil {
		t.Fatal(err)
	}
	port := fmt.Sprint(testpeer.FreePort(t))
	testpeer.Nginx(t, `
	sendfile on;
	server {
		listen 127.0.0.1:`+port+`;
		root `+root+`;
	}`)
	testpeer.WaitListening(t, "127.0.0.1:"+port)
	g := startGate(t, testpki.NewCA(t, "test"), fmt.Sprintf(echoSvc, port), "")
	before := splicedBytes.Load()
	out := filepath.Join(t.TempDir(), "got")
	url := "http://hq.example.com/firmware.bin"
	cmd := exec.Command(curl, "-sS", "--fail", "--max-time", "30", "--interface", "127.0.0.2",
		"--connect-to", "hq.example.com:80:"+g.http, "-o", out+"1", url, "-o", out+"2", url,
		"-w", "%{num_connects}\n")
	res, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, res)
	}
	if got := strings.Fields(string(res)); len(got) != 2 || got[1] != "0" {
		t.Errorf("curl's connections per transfer: %q, want the second on the first's connection", res)
	}
	for _, f := range []string{out + "1", out + "2"} {
		b, err := os.ReadFile(f)
		if err != nil || !bytes.Equal(b, file) {
			t.Fatalf("%s: %d bytes (%v), want the file's %d", f, len(b), err, len(file))
		}
	}
	if moved := splicedBytes.Load() - before; moved < int64(len(file)) {
		t.Fatalf("%d bytes spliced for two transfers of %d", moved, len(file))
	}
}
