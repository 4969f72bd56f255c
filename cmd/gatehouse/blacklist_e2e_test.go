package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestBlacklistWithCurl drives the built binary with curl from many
// loopback addresses: clients that ask for forbidden URLs get blocked
// before a byte is read, the whitelisted one and a well-behaved one keep
// being served, a killed process comes back with its entries, and expiry
// releases them.
func TestBlacklistWithCurl(t *testing.T) {
	need(t, "curl")
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "pbx")
	}))
	defer target.Close()
	_, tport, _ := net.SplitHostPort(target.Listener.Addr().String())
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	state := filepath.Join(t.TempDir(), "state.json")
	const expiration = 15 * time.Second // long enough to outlast the restart on a slow machine
	config := fmt.Sprintf(`listen:
  http: %q
services:
  - name: hq.example.com
    target: 127.0.0.1
    ports: {http: %s}
    allow:
      urls: [/PBX0/MY]
blacklist:
  threshold: 3
  expiration: %s
  whitelist: [127.0.0.7]
  blacklist: [127.0.0.40]
  state: %s
`, addr, tport, expiration, state)
	url := "http://hq.example.com:" + port
	resolve := "hq.example.com:" + port + ":127.0.0.1"
	get := func(src, path string) string {
		code, _ := curl(t, src, "--resolve", resolve, url+path)
		return code
	}

	in := start(t, config, addr)
	if code := get("127.0.0.40", "/PBX0/MY"); code != "000" {
		t.Fatalf("manual entry from the config served: %s", code)
	}

	// Twenty attackers at once, each one request over the threshold.
	attackers := make([]string, 20)
	for i := range attackers {
		attackers[i] = fmt.Sprintf("127.0.0.%d", 10+i)
	}
	var wg sync.WaitGroup
	codes := make([][]string, len(attackers))
	for i, src := range attackers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 4 {
				codes[i] = append(codes[i], get(src, "/PBX0/ADMIN.xml"))
			}
		}()
	}
	// The whitelisted address misbehaves just as much.
	for range 6 {
		if code := get("127.0.0.7", "/PBX0/ADMIN.xml"); code != "403" {
			t.Errorf("whitelisted client: %s, want 403", code)
		}
	}
	wg.Wait()
	for i, src := range attackers {
		if strings.Join(codes[i], ",") != "403,403,403,403" {
			t.Errorf("%s: %v, want four 403s", src, codes[i])
		}
		if code := get(src, "/PBX0/MY"); code != "000" {
			t.Errorf("%s after 4 suspicious requests: %s, want the connection closed", src, code)
		}
	}
	for _, src := range []string{"127.0.0.7", "127.0.0.3"} {
		if code := get(src, "/PBX0/MY"); code != "200" {
			t.Errorf("%s: %s, want 200", src, code)
		}
	}
	in.waitLog(t, "msg=\"client blocked\" client=127.0.0.29 count=4")

	// Killed without a chance to save: what is older than a second survives.
	time.Sleep(1500 * time.Millisecond)
	in.cmd.Process.Kill()
	<-in.done
	in.done <- nil // for the cleanup
	in = start(t, config, addr)
	for _, src := range []string{attackers[0], attackers[19], "127.0.0.40"} {
		if code := get(src, "/PBX0/MY"); code != "000" {
			t.Errorf("%s after a restart: %s, want still blocked", src, code)
		}
	}
	if code := get("127.0.0.3", "/PBX0/MY"); code != "200" {
		t.Errorf("127.0.0.3 after a restart: %s", code)
	}

	// Expiry releases the automatic entries (each blocked at its own
	// moment), never the manual one.
	deadline := time.Now().Add(expiration + 10*time.Second)
	for _, src := range []string{attackers[0], attackers[19]} {
		for get(src, "/PBX0/MY") != "200" {
			if time.Now().After(deadline) {
				t.Fatalf("%s never released", src)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	in.waitLog(t, "msg=\"client released\" client=127.0.0.10")
	if code := get("127.0.0.40", "/PBX0/MY"); code != "000" {
		t.Errorf("manual entry after expiry: %s, want still blocked", code)
	}
}
