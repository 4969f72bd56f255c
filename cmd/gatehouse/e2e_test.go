package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
)

// End-to-end tests: the built binary, driven by curl and openssl s_client
// from Debian's packages, in front of a real net/http target.

var binary string

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		// Re-run inside a test's network namespace (netns_e2e_test.go).
		os.Exit(netnsHelper(os.Args[1:]))
	}
	dir, err := os.MkdirTemp("", "gatehouse-e2e")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "gatehouse")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building gatehouse: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// need skips the test when a program is missing, except in CI where the
// missing program is a broken setup.
func need(t *testing.T, programs ...string) {
	t.Helper()
	for _, p := range programs {
		testpeer.Program(t, p, p)
	}
}

func freeAddr(t *testing.T) string { return freeAddrOn(t, "127.0.0.1") }

// freeAddrOn returns ip:port with a TCP port free on ip (testpeer.FreeAddrOn).
func freeAddrOn(t *testing.T, ip string) string { return testpeer.FreeAddrOn(t, ip) }

type instance struct {
	cmd    *exec.Cmd
	log    *testpeer.Log
	config string
	done   chan error
}

// start runs the binary on config text and waits until addr accepts.
func start(t *testing.T, config, addr string) *instance {
	t.Helper()
	in := launch(t, "gatehouse.yaml", config, nil, "run")
	in.waitListening(t, addr)
	return in
}

// launch writes config to a file called file and runs `gatehouse cmd
// -config FILE` on it, through wrap when set (prlimit, ip netns exec). The
// process is killed at cleanup and its output logged when the test failed.
func launch(t *testing.T, file, config string, wrap []string, cmd string) *instance {
	t.Helper()
	path := filepath.Join(t.TempDir(), file)
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	in := &instance{log: &testpeer.Log{}, config: path, done: make(chan error, 1)}
	in.cmd = command(wrap, binary, cmd, "-config", path)
	in.cmd.Stdout, in.cmd.Stderr = in.log, in.log
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { in.done <- in.cmd.Wait() }()
	t.Cleanup(func() {
		in.cmd.Process.Kill()
		<-in.done
		if t.Failed() {
			t.Logf("gatehouse %s log:\n%s", cmd, in.log)
		}
	})
	return in
}

// waitListening waits until addr accepts, failing t after ten seconds.
func (in *instance) waitListening(t *testing.T, addr string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gatehouse did not listen on %s:\n%s", addr, in.log)
		}
	}
}

func (in *instance) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := in.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// waitLog waits until the log contains s.
func (in *instance) waitLog(t *testing.T, s string) {
	t.Helper()
	in.waitLogFor(t, 10*time.Second, s)
}

// waitLogFor is waitLog with a wait of d.
func (in *instance) waitLogFor(t *testing.T, d time.Duration, s string) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if strings.Contains(in.log.String(), s) {
			return
		}
	}
	t.Fatalf("log never said %q:\n%s", s, in.log)
}

// curl runs curl from source address src and returns the status code and body.
func curl(t *testing.T, src string, args ...string) (string, string) {
	t.Helper()
	out, err := exec.Command("curl", append([]string{"-sS", "--max-time", "10", "--interface", src,
		"-w", "\n%{http_code}"}, args...)...).CombinedOutput()
	s := string(out)
	i := strings.LastIndexByte(s, '\n')
	if err != nil && i < 0 {
		t.Fatalf("curl %v: %v\n%s", args, err, out)
	}
	return s[i+1:], s[:i]
}

type fixture struct {
	ca           *testpki.CA
	httpAddr     string
	httpsAddr    string
	target       *httptest.Server
	slowStarted  chan struct{} // a request to /PBX0/MY/slow reached the target
	config       string
	resolveHTTP  string
	resolveHTTPS string
	httpsPort    string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{ca: testpki.NewCA(t, "e2e"), slowStarted: make(chan struct{}, 1)}
	f.target = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/PBX0/MY/slow" {
			f.slowStarted <- struct{}{}
			time.Sleep(700 * time.Millisecond)
		}
		fmt.Fprintf(w, "pbx says %s host=%s xff=%s xfp=%s", r.URL.Path, r.Host,
			r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"))
	}))
	t.Cleanup(f.target.Close)
	_, tport, _ := net.SplitHostPort(f.target.Listener.Addr().String())
	first := f.ca.Server("hq.example.com")
	second := f.ca.Server("other.example.com")
	f.httpAddr, f.httpsAddr = freeAddr(t), freeAddr(t)
	_, httpPort, _ := net.SplitHostPort(f.httpAddr)
	_, f.httpsPort, _ = net.SplitHostPort(f.httpsAddr)
	f.resolveHTTP = "hq.example.com:" + httpPort + ":127.0.0.1"
	f.resolveHTTPS = "hq.example.com:" + f.httpsPort + ":127.0.0.1"
	f.config = fmt.Sprintf(`listen:
  http: %q
  https: %q
tls:
  certificates:
    - {cert: %s, key: %s}
    - {cert: %s, key: %s}
services:
  - name: hq.example.com
    target: 127.0.0.1
    ports: {http: %s}
    allow:
      urls: [/PBX0/MY, /PBX0/WEBSOCKET, /PBX0/APPS/]
      networks:
        http: [127.0.0.0/8]
        https: [127.0.0.0/29]
blacklist:
  threshold: 1000
log:
  level: debug
`, f.httpAddr, f.httpsAddr, first.CertFile, first.KeyFile, second.CertFile, second.KeyFile, tport)
	return f
}

func TestHTTPSRoutingWithCurl(t *testing.T) {
	need(t, "curl")
	f := newFixture(t)
	in := start(t, f.config, f.httpsAddr)
	url := "https://hq.example.com:" + f.httpsPort

	code, body := curl(t, "127.0.0.2", "--cacert", f.ca.File, "--resolve", f.resolveHTTPS, url+"/PBX0/MY/index.htm")
	if code != "200" || body != "pbx says /PBX0/MY/index.htm host=hq.example.com:"+f.httpsPort+" xff=127.0.0.2 xfp=https" {
		t.Fatalf("allowed URL: %s %q", code, body)
	}
	// HTTP/2 is negotiated by ALPN and routed per request.
	out, err := exec.Command("curl", "-sS", "--http2", "-o", "/dev/null", "-w", "%{http_version}", "--cacert", f.ca.File,
		"--resolve", f.resolveHTTPS, url+"/PBX0/MY").CombinedOutput()
	if err != nil || string(out) != "2" {
		t.Fatalf("HTTP/2: %q %v", out, err)
	}
	for _, tc := range []struct{ src, url, code string }{
		{"127.0.0.2", url + "/PBX0/ADMIN.xml", "403"},       // URL not on the list
		{"127.0.0.2", url + "/PBX0/APPS/a/b.htm", "403"},    // a further "/" after /PBX0/APPS/
		{"127.0.0.2", url + "/PBX0/MY/../ADMIN.xml", "403"}, // dot segments (curl keeps them with --path-as-is)
		{"127.0.0.9", url + "/PBX0/MY", "403"},              // https allowed only from 127.0.0.0/29
	} {
		code, body := curl(t, tc.src, "--path-as-is", "--cacert", f.ca.File, "--resolve", f.resolveHTTPS, tc.url)
		if code != tc.code || strings.Contains(body, "127.0.0.1") {
			t.Errorf("%s from %s: %s %q, want %s", tc.url, tc.src, code, body, tc.code)
		}
	}
	// An unknown host name on the same address.
	code, _ = curl(t, "127.0.0.2", "-k", "--resolve", "intranet.example.com:"+f.httpsPort+":127.0.0.1",
		"https://intranet.example.com:"+f.httpsPort+"/")
	if code != "421" {
		t.Errorf("unknown host: %s", code)
	}
	in.waitLog(t, `msg=refused client=127.0.0.2 type=https service=intranet.example.com reason="unknown service"`)
	in.waitLog(t, `msg=refused client=127.0.0.9 type=https service=hq.example.com reason="network not allowed"`)
	// The refused path is named, for the administrator tuning allow.urls.
	in.waitLog(t, `msg=refused client=127.0.0.2 type=https service=hq.example.com reason="url not allowed" err="path \"/PBX0/ADMIN.xml\""`)
	in.waitLog(t, `msg=routed client=127.0.0.2 type=https service=hq.example.com`)
}

func TestCertificateBySNIWithOpenSSL(t *testing.T) {
	need(t, "openssl")
	f := newFixture(t)
	start(t, f.config, f.httpsAddr)
	for sni, want := range map[string]string{
		"other.example.com": "CN = other.example.com",
		"hq.example.com":    "CN = hq.example.com",
		"":                  "CN = hq.example.com", // the first certificate is the default
	} {
		args := []string{"s_client", "-connect", f.httpsAddr, "-brief"}
		if sni != "" {
			args = append(args, "-servername", sni)
		} else {
			args = append(args, "-noservername")
		}
		cmd := exec.Command("openssl", args...)
		cmd.Stdin = strings.NewReader("")
		out, _ := cmd.CombinedOutput()
		if !strings.Contains(string(out), "Peer certificate: "+want) {
			t.Errorf("SNI %q: want %q in\n%s", sni, want, out)
		}
	}
}

func TestCheckCommand(t *testing.T) {
	f := newFixture(t)
	good := filepath.Join(t.TempDir(), "good.yaml")
	os.WriteFile(good, []byte(f.config), 0o600)
	out, err := exec.Command(binary, "check", "-config", good).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("check of a good file: %v\n%s", err, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	broken := strings.Replace(f.config, "blacklist:\n  threshold: 1000", "blacklist:\n  treshold: 1000", 1)
	broken = strings.Replace(broken, "127.0.0.0/29", "127.0.0.0/33", 1)
	os.WriteFile(bad, []byte(broken), 0o600)
	out, err = exec.Command(binary, "check", "-config", bad).CombinedOutput()
	if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != 1 {
		t.Fatalf("check of a bad file: %v\n%s", err, out)
	}
	lines := strings.Split(string(out), "\n")
	lineOf := func(s string) int {
		for i, l := range strings.Split(broken, "\n") {
			if strings.Contains(l, s) {
				return i + 1
			}
		}
		return -1
	}
	for _, want := range []string{
		fmt.Sprintf("%s:%d: services[0].allow.networks.https[0]:", bad, lineOf("127.0.0.0/33")),
		fmt.Sprintf("%s:%d: blacklist.treshold: unknown key", bad, lineOf("treshold")),
	} {
		found := false
		for _, l := range lines {
			found = found || strings.HasPrefix(l, want)
		}
		if !found {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
}

// TestSIGHUPDuringStart: a SIGHUP sent as soon as gatehouse has logged
// its first line (a reload right after a start: logrotate, an operator's
// script) is a reload once the start is done, not the signal's default
// action, which ends the process.
func TestSIGHUPDuringStart(t *testing.T) {
	f := newFixture(t)
	in := launch(t, "gatehouse.yaml", f.config, nil, "run")
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(in.log.String(), "level="); time.Sleep(100 * time.Microsecond) {
		if time.Now().After(deadline) {
			t.Fatalf("gatehouse logged nothing:\n%s", in.log)
		}
	}
	in.signal(t, syscall.SIGHUP)
	in.waitLog(t, "configuration reloaded")
	select {
	case err := <-in.done:
		t.Fatalf("gatehouse ended (%v) after a SIGHUP during its start:\n%s", err, in.log)
	default:
	}
}

func TestReloadAndGracefulStop(t *testing.T) {
	need(t, "curl")
	f := newFixture(t)
	in := start(t, f.config, f.httpAddr)
	url := "http://hq.example.com:" + strings.Split(f.resolveHTTP, ":")[1]

	// SIGHUP with a broken file keeps the running configuration.
	os.WriteFile(in.config, []byte(f.config+"bogus: 1\n"), 0o600)
	in.signal(t, syscall.SIGHUP)
	in.waitLog(t, "reload failed")
	if !strings.Contains(in.log.String(), "key=bogus") {
		t.Errorf("the reload error does not name the key:\n%s", in.log)
	}
	if code, _ := curl(t, "127.0.0.2", "--resolve", f.resolveHTTP, url+"/PBX0/MY"); code != "200" {
		t.Fatalf("after a failed reload: %s", code)
	}
	// A good file takes effect for new requests.
	os.WriteFile(in.config, []byte(strings.Replace(f.config, "/PBX0/APPS/]", "/PBX0/APPS/, /CDR0/CALL-LIST]", 1)), 0o600)
	in.signal(t, syscall.SIGHUP)
	in.waitLog(t, "configuration reloaded")
	if code, _ := curl(t, "127.0.0.2", "--resolve", f.resolveHTTP, url+"/CDR0/CALL-LIST"); code != "200" {
		t.Fatalf("after reload: %s", code)
	}

	// SIGTERM lets a request in flight finish, then exits 0.
	type result struct{ code, body string }
	res := make(chan result, 1)
	go func() {
		code, body := curl(t, "127.0.0.2", "--resolve", f.resolveHTTP, url+"/PBX0/MY/slow")
		res <- result{code, body}
	}()
	<-f.slowStarted
	in.signal(t, syscall.SIGTERM)
	if r := <-res; r.code != "200" {
		t.Fatalf("request in flight during shutdown: %s %q", r.code, r.body)
	}
	select {
	case err := <-in.done:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
		in.done <- nil
	case <-time.After(10 * time.Second):
		t.Fatal("gatehouse did not exit after SIGTERM")
	}
}
