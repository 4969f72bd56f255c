package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
	"github.com/gatehouse-pbx/gatehouse/proxy/gate"
)

// The IPv6 flood runs in a network namespace the test makes, with
// addresses of its own on the namespace's loopback: ::1 is a /64 of its
// own, and no test may use addresses outside loopback or its namespace.
// The test binary re-runs itself inside the namespace as the target and as
// the flooder (netnsHelper), since a socket belongs to the namespace of the
// thread that made it.

// helperEnv selects a helper mode of the test binary (see TestMain).
const helperEnv = "GATEHOUSE_NETNS_HELPER"

// netnsHelper runs one helper until SIGTERM: "target ADDR" answers every
// HTTP request "pbx"; "flood ADDR PREFIX N" holds a flood from
// PREFIX1 … PREFIXN (holdFlood).
func netnsHelper(args []string) int {
	stop := make(chan struct{})
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-sig; close(stop) }()
	switch {
	case len(args) == 2 && args[0] == "target":
		ln, err := net.Listen("tcp", args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "pbx") })}
		go func() { <-stop; srv.Close() }()
		fmt.Println("listening")
		srv.Serve(ln)
		return 0
	case len(args) == 4 && args[0] == "flood":
		n, err := strconv.Atoi(args[3])
		if err != nil {
			return 2
		}
		var srcs []string
		for i := range n {
			srcs = append(srcs, fmt.Sprintf("%s%x", args[2], i+1))
		}
		var wg sync.WaitGroup
		var held atomic.Int64
		holdFlood(srcs, args[1], 250*time.Millisecond, stop, &wg, &held)
		fmt.Println("flooding")
		wg.Wait()
		return 0
	}
	fmt.Fprintf(os.Stderr, "%s: unknown helper %q\n", helperEnv, args)
	return 2
}

// netns is a network namespace made for one test.
type netns struct{ name string }

// newNetns makes a namespace with lo up, or skips when that is not
// possible (not root, no ip) outside CI; under CI=true it must work.
func newNetns(t *testing.T) *netns {
	t.Helper()
	testpeer.Program(t, "ip", "iproute2")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("network namespace tests need root, and CI runs as root")
		}
		t.Skip("network namespaces need root")
	}
	ns := &netns{name: fmt.Sprintf("gh-test-%d", os.Getpid())}
	if out, err := exec.Command("ip", "netns", "add", ns.name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns.name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", ns.name, err, out)
		}
	})
	ns.ip(t, "link", "set", "lo", "up")
	return ns
}

// ip runs ip -n NS args.
func (ns *netns) ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", append([]string{"-n", ns.name}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("ip %v: %v\n%s", args, err, out)
	}
}

// addAddrs adds addrs to lo in one batch (no duplicate address detection:
// they are the namespace's own).
func (ns *netns) addAddrs(t *testing.T, addrs []string) {
	t.Helper()
	var b strings.Builder
	for _, a := range addrs {
		fmt.Fprintf(&b, "addr add %s dev lo nodad\n", a)
	}
	path := filepath.Join(t.TempDir(), "addrs")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	ns.ip(t, "-6", "-batch", path)
}

// command is name args run inside the namespace.
func (ns *netns) command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns.name, name}, args...)...)
}

// helper starts the test binary inside the namespace as a helper and
// waits for its first line; it is stopped at cleanup.
func (ns *netns) helper(t *testing.T, args ...string) {
	t.Helper()
	cmd := ns.command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	log := &testpeer.Log{}
	cmd.Stderr = log
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	line := make([]byte, 64)
	if n, err := out.Read(line); err != nil || n == 0 {
		t.Fatalf("helper %v did not start: %v\n%s", args, err, log)
	}
}

// curl runs curl inside the namespace and returns the status code and body.
func (ns *netns) curl(t *testing.T, src string, args ...string) (string, string) {
	t.Helper()
	out, _ := ns.command("curl", append([]string{"-sS", "--max-time", "3", "--interface", src, "-w", "\n%{http_code}"}, args...)...).CombinedOutput()
	s := string(out)
	i := strings.LastIndexByte(s, '\n')
	if i < 0 {
		return "", s
	}
	return s[i+1:], s[:i]
}

// TestSpreadFloodOverOneIPv6Slash64: 500 addresses of 2001:db8:1::/64, one
// connection each, against gatehouse in a namespace of its own. The /64 is
// one client: together its addresses hold max_conns_per_ip (8), the rest is
// refused at accept, and a good client in 2001:db8:2::/48 keeps its success
// rate while the admin UI answers.
func TestSpreadFloodOverOneIPv6Slash64(t *testing.T) {
	need(t, "curl", "prlimit")
	ns := newNetns(t)
	const server, good, operator = "2001:db8:ff::1", "2001:db8:2::1", "2001:db8:3::1"
	addrs := []string{server + "/128", good + "/128", operator + "/128"}
	for i := range 500 {
		addrs = append(addrs, fmt.Sprintf("2001:db8:1::%x/64", i+1))
	}
	ns.addAddrs(t, addrs)
	ns.helper(t, "target", "["+server+"]:9000")

	ca := testpki.NewCA(t, "netns")
	cert := ca.Server("hq.example.com")
	hash, err := bcrypt.GenerateFromPassword([]byte(adminPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`listen:
  http: "[%[1]s]:8080"
services:
  - name: hq.example.com
    target: "%[1]s"
    ports: {http: 9000}
admin:
  listen: "[%[1]s]:8443"
  cert: %[2]s
  key: %[3]s
  users:
    - {name: admin, password_hash: %[4]q}
blacklist:
  threshold: 1000000
  max_tracked: 100000
limits:
  first_packet_timeout: 2s
  max_conns_per_ip: 8
  max_conns: 200
`, server, cert.CertFile, cert.KeyFile, hash)
	// Killed at cleanup, before the namespace is deleted (cleanups run last first).
	in := launch(t, "gatehouse.yaml", config, []string{"ip", "netns", "exec", ns.name, "prlimit", "--nofile=1024:1024"}, "run")
	in.waitLog(t, "gatehouse started")

	site := "http://hq.example.com:8080/"
	resolve := "hq.example.com:8080:[" + server + "]"
	goodRuns := func(n int) int {
		ok := 0
		for range n {
			if code, body := ns.curl(t, good, "--resolve", resolve, site); code == "200" && body == "pbx" {
				ok++
			}
		}
		return ok
	}
	healthy := func() bool {
		code, _ := ns.curl(t, operator, "-k", "https://["+server+"]:8443/healthz")
		return code == "200"
	}
	stats := func() gate.Stats {
		code, body := ns.curl(t, operator, "-k", "-u", "admin:"+adminPassword, "https://["+server+"]:8443/api/status")
		var st struct{ Gate gate.Stats }
		if code != "200" || json.Unmarshal([]byte(body), &st) != nil {
			t.Fatalf("GET /api/status: %s %s", code, body)
		}
		return st.Gate
	}

	base := goodRuns(20)
	if base < 19 || !healthy() {
		t.Fatalf("unloaded: %d of 20, admin healthy %v", base, healthy())
	}
	ns.helper(t, "flood", "["+server+"]:8080", "2001:db8:1::", "500")
	var st gate.Stats
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if st = stats(); st.RefusedCap >= 500 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the flood was not refused: %+v", st)
		}
	}
	ok := goodRuns(40)
	up := healthy()
	st = stats()
	t.Logf("unloaded %d of 20; during the flood %d of 40; gate %+v", base, ok, st)
	if float64(ok)/40 < 0.95*float64(base)/20 || !up {
		t.Errorf("during the flood: good client %d of 40 (unloaded %d of 20), admin healthy %v", ok, base, up)
	}
	// The /64 holds its one client's cap; the good client at most one more.
	if st.Capped > 8+1 {
		t.Errorf("the /64 holds more than max_conns_per_ip: %+v", st)
	}
	in.waitLog(t, "connection refused: connection limit per client\" client=2001:db8:1::")
}
