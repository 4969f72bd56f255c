package main

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/gatehouse-pbx/gatehouse/cluster"
	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
)

// TestClusterAgents runs three gatehouse nodes on 127.0.0.11-13 and one
// `gatehouse agent` connected to node a only, fronting nginx (HTTP), slapd
// (LDAP) and Kamailio (SIP). curl, ldapsearch and sipp reach them through
// nodes b and c, whose
// connections are carried over cluster.forward_listen to a; nginx logs the
// real client's address. When a is killed with SIGKILL, b answers 503
// (not counted against the client) and forgets a's registration within
// the registration TTL; the agent then dials b, which serves it directly.
func TestClusterAgents(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three gatehouse processes and an agent")
	}
	need(t, "curl", "ldapsearch")
	nginxAddr := "127.0.0.5:" + strconv.Itoa(testpeer.FreePort(t))
	ndir := testpeer.Nginx(t, `
	log_format real '$remote_addr real=$http_x_real_ip $request_uri';
	access_log @DIR@/access.log real;
	server {
		listen `+nginxAddr+`;
		location / { return 200 "nginx $request_uri real=$http_x_real_ip"; }
	}`)
	testpeer.WaitListening(t, nginxAddr)
	ldapAddr := "127.0.0.6:" + strconv.Itoa(testpeer.FreePort(t))
	startSlapdIn(t, nil, ldapAddr)
	testpeer.Program(t, "kamailio", "kamailio") // missing: skip (fail in CI) before anything starts
	sipp := testpeer.Program(t, "sipp", "sip-tester")
	sipE2E, err := filepath.Abs("../../protocols/sip/testdata/e2e")
	if err != nil {
		t.Fatal(err)
	}
	sipAddr := "127.0.0.6:" + strconv.Itoa(testpeer.FreePort(t))
	startKamailio(t, nil, filepath.Join(sipE2E, "kamailio.cfg"), sipAddr)
	testpeer.WaitListening(t, sipAddr)

	dir := t.TempDir()
	ca := testpki.NewCA(t, "gatehouse cluster")
	edgeCA := testpki.NewCA(t, "edge")
	edgeCert := edgeCA.Server("edge.example.com", "hq.example.com")
	hash, err := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	type node struct {
		gnode
		https, ldap, sip, agents, forward string
	}
	var nodes []*node
	for i := range 3 {
		ip := "127.0.0." + strconv.Itoa(i+11)
		n := &node{gnode: gnode{name: "node-" + string(rune('a'+i)), ip: ip, http: freeAddrOn(t, ip), admin: freeAddrOn(t, ip), route: freeAddrOn(t, ip)},
			https: freeAddrOn(t, ip), ldap: freeAddrOn(t, ip), sip: freeAddrOn(t, ip), agents: freeAddrOn(t, ip), forward: freeAddrOn(t, ip)}
		cert := ca.Node(n.name, ip)
		n.certFile, n.keyDir = cert.CertFile, cert.KeyFile
		n.storeDir = filepath.Join(dir, n.name, "nats")
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		var peers []string
		for _, o := range nodes {
			if o != n {
				peers = append(peers, strconv.Quote(o.route))
			}
		}
		n.config = fmt.Sprintf(`listen: {http: %q, https: %q, ldap: %q, sip: %q}
tls: {certificates: [{cert: %s, key: %s}]}
agents:
  listen: %q
  heartbeat: 1s
  accounts: [{name: hq-lan, token_hash: %q, names: [hq.example.com, example.com]}]
services:
  - name: hq.example.com
    agent: hq-lan
    allow: {urls: [/PBX0/MY]}
  - {name: example.com, agent: hq-lan}
blacklist: {threshold: 3}
admin:
  listen: %q
  state_dir: %s
  users: [{name: admin, password_hash: %q}]
cluster:
  node: %s
  listen: %q
  peers: [%s]
  forward_listen: %q
  tls: {cert: %s, key: %s, ca: %s}
  store_dir: %s
`, n.http, n.https, n.ldap, n.sip, edgeCert.CertFile, edgeCert.KeyFile, n.agents, hash, n.admin, filepath.Join(dir, n.name, "admin"), hash,
			n.name, n.route, strings.Join(peers, ", "), n.forward, n.certFile, n.keyDir, ca.File, n.storeDir)
	}
	for _, n := range nodes {
		n.in = start(t, n.config, n.http)
	}
	a, b, c := nodes[0], nodes[1], nodes[2]
	for _, n := range nodes {
		for deadline := time.Now().Add(clusterWait); !strings.Contains(n.in.log.String(), "cluster: joined"); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s never joined the cluster", n.name)
			}
		}
	}

	adminGet := func(n *node, path string) string {
		t.Helper()
		out, err := exec.Command("curl", "-sS", "-k", "--max-time", "10", "-u", "admin:secret", "https://"+n.admin+path).CombinedOutput()
		if err != nil {
			t.Fatalf("GET %s on %s: %v\n%s", path, n.name, err, out)
		}
		return string(out)
	}
	// tunnels is n's /api/agents: which node holds which tunnel.
	type tunnelView struct {
		Node   string   `json:"node"`
		Remote bool     `json:"remote"`
		Names  []string `json:"names"`
	}
	tunnels := func(n *node) []tunnelView {
		t.Helper()
		var ts []tunnelView
		if body := adminGet(n, "/api/agents"); json.Unmarshal([]byte(body), &ts) != nil {
			t.Fatalf("/api/agents on %s: %s", n.name, body)
		}
		return ts
	}
	waitTunnels := func(what string, n *node, ok func([]tunnelView) bool) time.Duration {
		t.Helper()
		start := time.Now()
		for !ok(tunnels(n)) {
			if time.Since(start) > clusterWait {
				t.Fatalf("%s: /api/agents on %s: %+v", what, n.name, tunnels(n))
			}
			time.Sleep(100 * time.Millisecond)
		}
		return time.Since(start)
	}
	held := func(node string, remote bool) func([]tunnelView) bool {
		return func(ts []tunnelView) bool {
			return len(ts) == 1 && ts[0].Node == node && ts[0].Remote == remote && len(ts[0].Names) == 2
		}
	}

	agentConfig := func(edge string) string {
		return fmt.Sprintf(`edges: [%q]
account: hq-lan
token: secret
edge_fingerprint: %q
shutdown_timeout: 1s
services:
  - {name: hq.example.com, target: 127.0.0.5, ports: {http: %s}}
  - {name: example.com, target: 127.0.0.6, ports: {ldap: %s, sip: %s}}
`, edge, configs.Fingerprint(edgeCert.TLS.Leaf), nginxAddr[strings.LastIndexByte(nginxAddr, ':')+1:],
			ldapAddr[strings.LastIndexByte(ldapAddr, ':')+1:], sipAddr[strings.LastIndexByte(sipAddr, ':')+1:])
	}
	ag := startAgent(t, agentConfig(a.agents))
	ag.waitLog(t, "tunnel up")
	a.in.waitLog(t, "agent tunnel up")
	waitTunnels("a holds the tunnel", a, held("node-a", false))
	for _, n := range []*node{b, c} {
		took := waitTunnels("b and c see a's tunnel", n, held("node-a", true))
		t.Logf("%s sees a's tunnel after %v", n.name, took)
	}

	get := func(n *node, src string, paths ...string) (string, string) {
		_, port, _ := net.SplitHostPort(n.http)
		var urls []string
		for _, p := range paths {
			urls = append(urls, "http://hq.example.com:"+port+p)
		}
		return curl(t, src, append([]string{"--resolve", "hq.example.com:" + port + ":" + n.ip}, urls...)...)
	}
	// h2 is an HTTP/2 request over TLS to n.
	h2 := func(n *node, src, path string) (string, string) {
		_, port, _ := net.SplitHostPort(n.https)
		return curl(t, src, "--http2", "--cacert", edgeCA.File, "--resolve", "hq.example.com:"+port+":"+n.ip,
			"https://hq.example.com:"+port+path)
	}
	ldap := func(n *node) (string, error) {
		_, port, _ := net.SplitHostPort(n.ldap)
		out, err := exec.Command("ldapsearch", "-x", "-H", "ldap://"+n.ip+":"+port, "-D", "uid=alice,dc=example,dc=com",
			"-w", "wonderland", "-b", "dc=example,dc=com", "(uid=alice)", "cn").CombinedOutput()
		return string(out), err
	}
	// phone registers three times with sipp from src through n (digest
	// authentication by Kamailio: several messages each way on one
	// connection).
	phone := func(n *node, src string) error {
		cmd := exec.Command(sipp, "-sf", filepath.Join(sipE2E, "register.xml"), "-t", "t1", "-i", src,
			"-s", "bob", "-au", "bob", "-ap", "secret", "-key", "domain", "example.com", "-m", "3",
			"-nostdin", "-timeout", "10s", "-recv_timeout", "3s", n.sip)
		cmd.Dir = t.TempDir()
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("sipp: %v\n%s", err, out[max(0, len(out)-1500):])
		}
		return nil
	}
	for i, n := range nodes {
		src := "127.0.0." + strconv.Itoa(31+i)
		if err := phone(n, src); err != nil {
			t.Errorf("SIP through %s: %v", n.name, err)
		}
		if code, body := get(n, src, "/PBX0/MY?"+n.name); code != "200" || body != "nginx /PBX0/MY?"+n.name+" real="+src {
			t.Errorf("through %s: %s %q", n.name, code, body)
		}
		if out, err := ldap(n); err != nil || !strings.Contains(out, "cn: alice") {
			t.Errorf("ldapsearch through %s: %v\n%s", n.name, err, out)
		}
	}
	// Keep-alive: two requests on one client connection to c, each
	// forwarded; a URL outside allow.urls refused on c itself.
	if code, body := get(c, "127.0.0.34", "/PBX0/MY?1", "/PBX0/MY?2"); code != "200" ||
		body != "nginx /PBX0/MY?1 real=127.0.0.34\n200nginx /PBX0/MY?2 real=127.0.0.34" {
		t.Errorf("keep-alive through c: %s %q", code, body)
	}
	if code, body := h2(b, "127.0.0.38", "/PBX0/MY?h2"); code != "200" || body != "nginx /PBX0/MY?h2 real=127.0.0.38" {
		t.Errorf("HTTP/2 through b: %s %q", code, body)
	}
	if code, _ := get(c, "127.0.0.35", "/ADMIN"); code != "403" {
		t.Errorf("URL outside allow.urls through c: %s, want 403", code)
	}
	// nginx logged the real clients, not a node's address.
	logged, _ := os.ReadFile(filepath.Join(ndir, "access.log"))
	for _, want := range []string{"real=127.0.0.32 /PBX0/MY?node-b", "real=127.0.0.33 /PBX0/MY?node-c", "real=127.0.0.34 /PBX0/MY?2"} {
		if !strings.Contains(string(logged), want) {
			t.Errorf("nginx's log lacks %q:\n%s", want, logged)
		}
	}
	if m := adminGet(b, "/metrics"); !strings.Contains(m, `gatehouse_agent_forwarded_total{direction="out",node="node-a",result="carried",service="hq.example.com"}`) ||
		!strings.Contains(m, `gatehouse_agent_cluster_tunnels{account="hq-lan",node="node-a"} 1`) {
		t.Errorf("/metrics of b lacks the forwarded connections or a's tunnel:\n%s", m)
	}
	// From c: one ldapsearch and one sipp connection (-t t1: one socket).
	if m := adminGet(a, "/metrics"); !strings.Contains(m, `gatehouse_agent_forwarded_total{direction="in",node="node-c",result="carried",service="example.com"} 2`) {
		t.Errorf("/metrics of a lacks the connections forwarded to it:\n%s", m)
	}

	// The Agents page: a's tunnel on b, held by node-a, with no Disconnect
	// (only a can); on a itself, with one.
	if page := loginPage(t, b.admin, "/agents"); !strings.Contains(page, "<td>node-a</td>") ||
		!strings.Contains(page, "held by node node-a") || strings.Contains(page, "/agents/disconnect") {
		t.Errorf("Agents page of b:\n%s", page)
	}
	if page := loginPage(t, a.admin, "/agents"); !strings.Contains(page, "<td>node-a</td>") || !strings.Contains(page, "/agents/disconnect") {
		t.Errorf("Agents page of a:\n%s", page)
	}

	// a dies: b answers 503 at once (a is out of reach) and drops a's
	// registration within its TTL. More requests than blacklist.threshold:
	// none is held against the client.
	a.in.signal(t, syscall.SIGKILL)
	killed := time.Now()
	a.in.done <- <-a.in.done
	for i := range 5 {
		if code, _ := get(b, "127.0.0.36", "/PBX0/MY"); code != "503" {
			t.Fatalf("request %d through b with a dead: %s, want 503", i, code)
		}
	}
	if err := phone(c, "127.0.0.36"); err == nil {
		t.Error("SIP through c with a dead: registered")
	}
	if code, _ := h2(c, "127.0.0.36", "/PBX0/MY"); code != "503" {
		t.Errorf("HTTP/2 through c with a dead: %s, want 503", code)
	}
	if out, err := ldap(c); err == nil || !strings.Contains(out, "unavailable (52)") {
		t.Errorf("ldapsearch through c with a dead: %v\n%s", err, out)
	}
	waitTunnels("a's registration expires", b, func(ts []tunnelView) bool { return len(ts) == 0 })
	gone := time.Since(killed)
	t.Logf("b forgot a's tunnel %v after the kill (bound: AgentTTL+AgentRefresh = %v)", gone, cluster.AgentTTL+cluster.AgentRefresh)
	if gone > cluster.AgentTTL+cluster.AgentRefresh+5*time.Second {
		t.Errorf("a's registration held %v after the kill", gone)
	}
	if code, _ := get(b, "127.0.0.36", "/PBX0/MY"); code != "503" {
		t.Errorf("after expiry: %s, want 503", code)
	}
	if bl := adminGet(b, "/api/blacklist"); strings.Contains(bl, "127.0.0.36") {
		t.Errorf("the client of the unavailable service was blacklisted: %s", bl)
	}

	// The agent dials b instead: b serves it through its own tunnel, c forwards to b.
	ag.signal(t, syscall.SIGTERM)
	ag.done <- <-ag.done
	ag = startAgent(t, agentConfig(b.agents))
	ag.waitLog(t, "tunnel up")
	waitTunnels("b holds the tunnel", b, held("node-b", false))
	waitTunnels("c sees b's tunnel", c, held("node-b", true))
	if code, body := get(b, "127.0.0.36", "/PBX0/MY?direct"); code != "200" || body != "nginx /PBX0/MY?direct real=127.0.0.36" {
		t.Errorf("through b's own tunnel: %s %q", code, body)
	}
	if code, body := get(c, "127.0.0.37", "/PBX0/MY?via-b"); code != "200" || body != "nginx /PBX0/MY?via-b real=127.0.0.37" {
		t.Errorf("through c to b: %s %q", code, body)
	}
}

// loginPage logs in to the admin UI at addr as admin (its certificate is
// the self-signed one made at first start) and returns the page at path.
func loginPage(t *testing.T, addr, path string) string {
	t.Helper()
	return adminPage(t, &tls.Config{InsecureSkipVerify: true}, addr, "secret", path)
}

// adminPage logs in to the admin UI at addr as admin with password,
// trusting its certificate by tc, and returns the page at path.
func adminPage(t *testing.T, tc *tls.Config, addr, password, path string) string {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	defer c.CloseIdleConnections()
	base := "https://" + addr
	get := func(u string) string {
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(get(base + "/login"))
	if m == nil {
		t.Fatal("no login form")
	}
	resp, err := c.PostForm(base+"/login", url.Values{"csrf": {m[1]}, "user": {"admin"}, "password": {password}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return get(base + path)
}
