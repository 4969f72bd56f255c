package main

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
)

// startNginx runs nginx on addr, answering every request with its method
// and URI; wrap prefixes its command ("ip netns exec NS").
func startNginx(t *testing.T, addr string, wrap ...string) {
	testpeer.Nginx(t, `
	access_log off;
	server {
		listen `+addr+`;
		location / { return 200 "nginx $request_method $request_uri host=$http_host"; }
	}`, wrap...)
	if len(wrap) == 0 {
		testpeer.WaitListening(t, addr)
	}
}

// command is name with args, run through wrap when it is set.
func command(wrap []string, name string, args ...string) *exec.Cmd {
	if len(wrap) == 0 {
		return exec.Command(name, args...)
	}
	return exec.Command(wrap[0], append(append(wrap[1:len(wrap):len(wrap)], name), args...)...)
}

// startAgent runs `gatehouse agent` on config text, through wrap when set.
func startAgent(t *testing.T, config string, wrap ...string) *instance {
	t.Helper()
	return launch(t, "agent.yaml", config, wrap, "agent")
}

type agentRig struct {
	edgeConfig, agentConfig string
	httpAddr, agentsAddr    string
	httpsAddr, adminAddr    string
	cert                    *testpki.Issued
	ca                      *testpki.CA
}

// newAgentRig: nginx on 127.0.0.5, which the edge's configuration never
// names; an edge with HTTP on 127.0.0.1 and agents.listen on 127.0.0.2; an
// agent fronting nginx for hq.example.com.
func newAgentRig(t *testing.T) *agentRig {
	need(t, "curl")
	nginxAddr := "127.0.0.5:" + fmt.Sprint(testpeer.FreePort(t))
	startNginx(t, nginxAddr)
	ca := testpki.NewCA(t, "edge")
	r := &agentRig{httpAddr: freeAddr(t), httpsAddr: freeAddr(t), adminAddr: freeAddr(t), agentsAddr: freeAddrOn(t, "127.0.0.2"),
		cert: ca.Server("edge.example.com", "hq.example.com"), ca: ca}
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	r.edgeConfig = fmt.Sprintf(`listen: {http: %q, https: %q}
tls: {certificates: [{cert: %s, key: %s}]}
agents:
  listen: %q
  heartbeat: 1s
  accounts:
    - {name: hq-lan, token_hash: %q, names: [hq.example.com]}
services:
  - name: hq.example.com
    agent: hq-lan
    allow: {urls: [/PBX0/MY, /PBX0/a, /PBX0/b, /PBX0/back]}
blacklist: {threshold: 3}
admin:
  listen: %q
  users: [{name: admin, password_hash: %q}]
`, r.httpAddr, r.httpsAddr, r.cert.CertFile, r.cert.KeyFile, r.agentsAddr, hash, r.adminAddr, hash)
	r.agentConfig = fmt.Sprintf(`edges: [%q]
account: hq-lan
token: s3cret
shutdown_timeout: 2s # the edge keeps idle keep-alive streams open; they end with it
edge_fingerprint: %q
services:
  - {name: hq.example.com, target: 127.0.0.5, ports: {http: %s}}
`, r.agentsAddr, configs.Fingerprint(r.cert.TLS.Leaf), nginxAddr[strings.LastIndexByte(nginxAddr, ':')+1:])
	return r
}

// admin asks the edge's admin listener, as user admin.
func (r *agentRig) admin(t *testing.T, args ...string) (string, string) {
	t.Helper()
	_, port, _ := strings.Cut(r.adminAddr, ":")
	last := len(args) - 1
	args[last] = "https://edge.example.com:" + port + args[last]
	return curl(t, "127.0.0.1", append([]string{"-u", "admin:s3cret", "--cacert", r.ca.File,
		"--resolve", "edge.example.com:" + port + ":127.0.0.1"}, args...)...)
}

// page logs in to the admin UI and returns the page at path.
func (r *agentRig) page(t *testing.T, path string) string {
	t.Helper()
	return adminPage(t, &tls.Config{RootCAs: r.ca.Pool(), ServerName: "edge.example.com"}, r.adminAddr, "s3cret", path)
}

func (r *agentRig) get(t *testing.T, path string) (string, string) {
	t.Helper()
	return curl(t, "127.0.0.3", "-H", "Host: hq.example.com", "http://"+r.httpAddr+path)
}

// TestAgentTunnel: curl through the edge reaches nginx behind the agent;
// without a tunnel the answer is 503 and the client is not blacklisted.
func TestAgentTunnel(t *testing.T) {
	r := newAgentRig(t)
	edge := start(t, r.edgeConfig, r.httpAddr)
	for range 5 { // more than blacklist.threshold: unavailability is not the client's fault
		if code, _ := r.get(t, "/PBX0/MY"); code != "503" {
			t.Fatalf("no tunnel yet: %s, want 503", code)
		}
	}
	ag := startAgent(t, r.agentConfig)
	ag.waitLog(t, "tunnel up")
	edge.waitLog(t, "agent tunnel up")
	code, body := r.get(t, "/PBX0/MY?x=1")
	if code != "200" || body != "nginx GET /PBX0/MY?x=1 host=hq.example.com" {
		t.Fatalf("through the tunnel: %s %q", code, body)
	}
	// Keep-alive: two requests on one client connection, and a URL the
	// edge refuses whatever the tunnel.
	out, err := exec.Command("curl", "-sS", "--interface", "127.0.0.3", "-H", "Host: hq.example.com",
		"http://"+r.httpAddr+"/PBX0/a", "http://"+r.httpAddr+"/PBX0/b").CombinedOutput()
	if err != nil || string(out) != "nginx GET /PBX0/a host=hq.example.comnginx GET /PBX0/b host=hq.example.com" {
		t.Fatalf("keep-alive: %v %q", err, out)
	}
	// HTTP/2 from the client: the edge's HTTP Transport dials through the tunnel.
	_, port, _ := strings.Cut(r.httpsAddr, ":")
	code, body = curl(t, "127.0.0.3", "--http2", "--cacert", r.ca.File, "--resolve", "hq.example.com:"+port+":127.0.0.1",
		"https://hq.example.com:"+port+"/PBX0/MY?h2")
	if code != "200" || body != "nginx GET /PBX0/MY?h2 host=hq.example.com:"+port {
		t.Errorf("HTTP/2 through the tunnel: %s %q", code, body)
	}
	if code, _ := r.get(t, "/ADMIN"); code != "403" {
		t.Errorf("URL outside allow.urls: %s, want 403", code)
	}
	// Operators see the agent: API, page, metrics; and can disconnect it.
	code, body = r.admin(t, "/api/agents")
	var tunnels []struct {
		ID      uint64   `json:"id"`
		Account string   `json:"account"`
		Names   []string `json:"names"`
		BytesIn int64    `json:"bytes_in"`
	}
	if err := json.Unmarshal([]byte(body), &tunnels); code != "200" || err != nil || len(tunnels) != 1 ||
		tunnels[0].Account != "hq-lan" || len(tunnels[0].Names) != 1 || tunnels[0].BytesIn == 0 {
		t.Fatalf("/api/agents: %s %v %s", code, err, body)
	}
	if body := r.page(t, "/agents"); !strings.Contains(body, "<td>hq-lan</td>") || !strings.Contains(body, "hq.example.com") {
		t.Errorf("/agents:\n%s", body)
	}
	if code, body := r.admin(t, "/metrics"); code != "200" || !strings.Contains(body, `gatehouse_agent_tunnels{account="hq-lan"} 1`) {
		t.Errorf("/metrics: %s\n%s", code, body)
	}
	if code, body := r.admin(t, "-X", "DELETE", fmt.Sprintf("/api/agents/%d", tunnels[0].ID)); code != "200" {
		t.Fatalf("DELETE /api/agents: %s %s", code, body)
	}
	ag.waitLog(t, "redialling")
	for deadline := time.Now().Add(10 * time.Second); strings.Count(ag.log.String(), "tunnel up") < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the disconnected agent did not come back")
		}
	}
	// A POST, which is never retried: the edge's pool must not hand it a
	// kept-alive stream of the tunnel that was cut.
	if code, body := curl(t, "127.0.0.3", "-H", "Host: hq.example.com", "-d", "x=1", "http://"+r.httpAddr+"/PBX0/MY"); code != "200" {
		t.Errorf("POST after the redial: %s %q", code, body)
	}

	// The agent leaves on SIGTERM: exit 0, and the edge answers 503 again.
	ag.signal(t, 15)
	select {
	case err := <-ag.done:
		ag.done <- err
		if err != nil {
			t.Errorf("agent exit: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not exit on SIGTERM")
	}
	edge.waitLog(t, "agent tunnel down")
	if code, _ := r.get(t, "/PBX0/MY"); code != "503" {
		t.Errorf("after the agent left: %s, want 503", code)
	}
	if strings.Contains(edge.log.String(), "blocked") {
		t.Errorf("a client was blocked:\n%s", edge.log)
	}
}

// TestAgentRefused: a wrong fingerprint, and a wrong token, get no tunnel.
func TestAgentRefused(t *testing.T) {
	r := newAgentRig(t)
	edge := start(t, r.edgeConfig, r.httpAddr)

	other := testpki.NewCA(t, "other").Server("edge.example.com")
	wrongPin := regexp.MustCompile(`edge_fingerprint: ".*"`).ReplaceAllString(r.agentConfig,
		fmt.Sprintf("edge_fingerprint: %q", configs.Fingerprint(other.TLS.Leaf)))
	ag := startAgent(t, wrongPin)
	ag.waitLog(t, "not edge_fingerprint")
	ag.cmd.Process.Kill()

	ag = startAgent(t, strings.Replace(r.agentConfig, "token: s3cret", "token: guess", 1))
	ag.waitLog(t, "the edge refused the tunnel: authentication failed")
	edge.waitLog(t, "wrong token")
	if strings.Contains(edge.log.String(), "agent tunnel up") {
		t.Errorf("a tunnel came up:\n%s", edge.log)
	}
	if code, _ := r.get(t, "/PBX0/MY"); code != "503" {
		t.Errorf("%s, want 503", code)
	}
}

// TestAgentRedial: a killed edge is redialled with growing delays, and
// service resumes once it is back.
func TestAgentRedial(t *testing.T) {
	r := newAgentRig(t)
	edge := start(t, r.edgeConfig, r.httpAddr)
	ag := startAgent(t, r.agentConfig)
	ag.waitLog(t, "tunnel up")
	edge.cmd.Process.Kill()
	<-edge.done
	edge.done <- nil
	// Three failed dials: 1 s, 2 s, 4 s before jitter (each in [d/2, d]).
	re := regexp.MustCompile(`redialling.* in=(\S+)`)
	var delays []time.Duration
	for deadline := time.Now().Add(15 * time.Second); len(delays) < 3 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		delays = delays[:0]
		for _, m := range re.FindAllStringSubmatch(ag.log.String(), -1) {
			d, err := time.ParseDuration(m[1])
			if err != nil {
				t.Fatal(err)
			}
			delays = append(delays, d)
		}
	}
	if len(delays) < 3 {
		t.Fatalf("redials: %v", delays)
	}
	for i, d := range delays[:3] {
		hi := time.Second << i
		if d < hi/2 || d > hi {
			t.Errorf("redial %d after %s, want from %s to %s", i, d, hi/2, hi)
		}
	}
	start(t, r.edgeConfig, r.httpAddr)
	for deadline := time.Now().Add(20 * time.Second); strings.Count(ag.log.String(), "tunnel up") < 2; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the agent did not come back")
		}
	}
	if code, body := r.get(t, "/PBX0/back"); code != "200" || !strings.HasPrefix(body, "nginx GET /PBX0/back") {
		t.Errorf("after the redial: %s %q", code, body)
	}
}

// TestAgentHeartbeat: an agent that stops answering (SIGSTOP) is dropped
// after three missed heartbeats, its name is unavailable at once, and the
// agent redials when it runs again.
func TestAgentHeartbeat(t *testing.T) {
	r := newAgentRig(t)
	edge := start(t, r.edgeConfig, r.httpAddr)
	ag := startAgent(t, r.agentConfig)
	ag.waitLog(t, "tunnel up")
	ag.signal(t, syscall.SIGSTOP)
	edge.waitLog(t, "missed 3 heartbeats")
	if code, _ := r.get(t, "/PBX0/MY"); code != "503" {
		t.Errorf("agent silent: %s, want 503", code)
	}
	ag.signal(t, syscall.SIGCONT)
	for deadline := time.Now().Add(15 * time.Second); strings.Count(ag.log.String(), "tunnel up") < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the agent did not redial after SIGCONT")
		}
	}
	if code, _ := r.get(t, "/PBX0/MY"); code != "200" {
		t.Errorf("after the redial: %s", code)
	}
}

func TestFingerprintAndCheckAgent(t *testing.T) {
	r := newAgentRig(t)
	out, err := exec.Command(binary, "fingerprint", r.cert.CertFile).CombinedOutput()
	if want := configs.Fingerprint(r.cert.TLS.Leaf) + "  edge.example.com\n"; err != nil || string(out) != want {
		t.Errorf("fingerprint: %v %q, want %q", err, out, want)
	}
	path := filepath.Join(t.TempDir(), "agent.yaml")
	os.WriteFile(path, []byte(r.agentConfig), 0o600)
	for _, args := range [][]string{{"check", "-config", path}, {"agent", "-check", "-config", path}} {
		out, err := exec.Command(binary, args...).CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), path+": OK\nagent: account hq-lan (token), edges "+r.agentsAddr) {
			t.Errorf("%v: %v\n%s", args, err, out)
		}
	}
	os.WriteFile(path, []byte(strings.Replace(r.agentConfig, "edge_fingerprint: \"sha256/", "edge_fingerprint: \"md5/", 1)), 0o600)
	out, err = exec.Command(binary, "check", "-config", path).CombinedOutput()
	if err == nil || !strings.Contains(string(out), path+":5: edge_fingerprint: ") {
		t.Errorf("a bad pin: %v\n%s", err, out)
	}
}

// TestAgentOnListenAny: an agent whose edge address is the edge's
// listen.any port (where a LAN lets only 443 out) negotiates ALPN
// gatehouse-agent/1 there and serves its services as on agents.listen.
func TestAgentOnListenAny(t *testing.T) {
	r := newAgentRig(t)
	anyAddr := freeAddrOn(t, "127.0.0.6")
	edgeConfig := strings.Replace(r.edgeConfig, fmt.Sprintf("listen: {http: %q, https: %q}", r.httpAddr, r.httpsAddr),
		fmt.Sprintf("listen: {http: %q, https: %q, any: %q}", r.httpAddr, r.httpsAddr, anyAddr), 1)
	agentConfig := strings.Replace(r.agentConfig, fmt.Sprintf("edges: [%q]", r.agentsAddr), fmt.Sprintf("edges: [%q]", anyAddr), 1)
	edge := start(t, edgeConfig, r.httpAddr)
	ag := startAgent(t, agentConfig)
	ag.waitLog(t, "tunnel up")
	edge.waitLog(t, "agent tunnel up")
	if code, body := r.get(t, "/PBX0/MY?any"); code != "200" || body != "nginx GET /PBX0/MY?any host=hq.example.com" {
		t.Fatalf("through a tunnel on listen.any: %s %q", code, body)
	}
}

// TestAgentOnListenHTTPS: an agent whose edge address is the edge's
// listen.https port negotiates ALPN gatehouse-agent/1 there and is handed
// to the tunnel server; HTTPS clients on the same port are served as before.
func TestAgentOnListenHTTPS(t *testing.T) {
	r := newAgentRig(t)
	agentConfig := strings.Replace(r.agentConfig, fmt.Sprintf("edges: [%q]", r.agentsAddr), fmt.Sprintf("edges: [%q]", r.httpsAddr), 1)
	edge := start(t, r.edgeConfig, r.httpAddr)
	ag := startAgent(t, agentConfig)
	ag.waitLog(t, "tunnel up")
	edge.waitLog(t, "agent tunnel up")
	if code, body := r.get(t, "/PBX0/MY?https"); code != "200" || body != "nginx GET /PBX0/MY?https host=hq.example.com" {
		t.Fatalf("through a tunnel on listen.https: %s %q", code, body)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: r.ca.Pool(), ServerName: "hq.example.com"}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "https://"+r.httpsAddr+"/PBX0/MY?h2", nil)
	req.Host = "hq.example.com"
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Fatalf("an HTTP/2 client on the same port: %s %s", resp.Proto, resp.Status)
	}
}

// TestAgentUploadToSlowTarget: a 16 MiB POST through the tunnel to a
// target that reads nothing for its first 300 ms arrives whole and in
// order. The agent hands a request to its target on the tunnel's frame
// reader only as far as the target's socket takes it at once; here the
// socket fills, and the rest must go through the goroutine that waits.
func TestAgentUploadToSlowTarget(t *testing.T) {
	r := newAgentRig(t)
	slowAddr := "127.0.0.5:" + fmt.Sprint(testpeer.FreePort(t))
	ln, err := net.Listen("tcp", slowAddr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		time.Sleep(300 * time.Millisecond) // the buffers between the agent and here fill meanwhile
		h := sha256.New()
		n, err := io.Copy(h, req.Body)
		fmt.Fprintf(w, "%d %x %v", n, h.Sum(nil), err)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	r.agentConfig = regexp.MustCompile(`ports: \{http: \d+\}`).ReplaceAllString(r.agentConfig,
		"ports: {http: "+slowAddr[strings.LastIndexByte(slowAddr, ':')+1:]+"}")
	start(t, r.edgeConfig, r.httpAddr)
	startAgent(t, r.agentConfig).waitLog(t, "tunnel up")

	body := make([]byte, 16<<20)
	for i := range body {
		body[i] = byte(i*7 + i>>12) // no run the framing could hide a loss in
	}
	file := filepath.Join(t.TempDir(), "upload")
	if err := os.WriteFile(file, body, 0o600); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%d %x <nil>", len(body), sha256.Sum256(body))
	code, got := curl(t, "127.0.0.3", "-H", "Host: hq.example.com", "-H", "Expect:", "--data-binary", "@"+file,
		"http://"+r.httpAddr+"/PBX0/MY")
	if code != "200" || got != want {
		t.Fatalf("upload through the tunnel: %s %q, want 200 %q", code, got, want)
	}
}

// TestAgentStalledClientsAreCut: seventeen curls download a large file
// from nginx behind the agent and are stopped (SIGSTOP), so that their
// streams spend the tunnel's whole window; the edge resets them once they
// have read nothing for the stall timeout (10 s), says so in its log with
// the client's address, and another client's request through the same
// tunnel is answered.
func TestAgentStalledClientsAreCut(t *testing.T) {
	r := newAgentRig(t)
	root := t.TempDir()
	os.Chmod(root, 0o755) // nginx may read as another user
	if err := os.MkdirAll(filepath.Join(root, "PBX0"), 0o755); err != nil {
		t.Fatal(err)
	}
	big, err := os.Create(filepath.Join(root, "PBX0", "MY"))
	if err != nil {
		t.Fatal(err)
	}
	big.Truncate(4 << 30) // sparse: far more than the clients' and the tunnel's buffers together
	big.Close()
	if err := os.WriteFile(filepath.Join(root, "PBX0", "a"), []byte("small"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(big.Name(), 0o644)
	bigAddr := "127.0.0.5:" + fmt.Sprint(testpeer.FreePort(t))
	testpeer.Nginx(t, "\taccess_log off;\n\tserver { listen "+bigAddr+"; location / { root "+root+"; } }")
	testpeer.WaitListening(t, bigAddr)
	r.agentConfig = regexp.MustCompile(`ports: \{http: \d+\}`).ReplaceAllString(r.agentConfig,
		"ports: {http: "+bigAddr[strings.LastIndexByte(bigAddr, ':')+1:]+"}")
	edge := start(t, r.edgeConfig, r.httpAddr)
	startAgent(t, r.agentConfig).waitLog(t, "tunnel up")

	const stoppers = 17 // one more than the tunnel's window holds streams' windows
	var curls []*exec.Cmd
	t.Cleanup(func() {
		for _, c := range curls {
			c.Process.Signal(syscall.SIGCONT)
			c.Process.Kill()
			c.Wait()
		}
	})
	for range stoppers {
		c := exec.Command("curl", "-s", "-o", "/dev/null", "--interface", "127.0.0.4",
			"-H", "Host: hq.example.com", "http://"+r.httpAddr+"/PBX0/MY")
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		curls = append(curls, c)
	}
	time.Sleep(500 * time.Millisecond) // every download under way
	for _, c := range curls {
		c.Process.Signal(syscall.SIGSTOP)
	}
	edge.waitLogFor(t, 60*time.Second, "its client read nothing while the tunnel's window ran short")
	if !strings.Contains(edge.log.String(), "client=127.0.0.4:") {
		t.Errorf("the reset's log line does not name the client:\n%s", edge.log)
	}
	if code, body := curl(t, "127.0.0.3", "-H", "Host: hq.example.com", "http://"+r.httpAddr+"/PBX0/a"); code != "200" || body != "small" {
		t.Fatalf("another client through the tunnel: %s %q", code, body)
	}
}
