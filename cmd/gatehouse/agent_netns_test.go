package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
)

// agentNetns makes a network namespace with only its loopback up, removed when
// the test ends. Outside CI it needs root (or skips).
func agentNetns(t *testing.T) []string {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the zero-ingress test needs root to make a network namespace")
		}
		t.Skip("not root: cannot make a network namespace")
	}
	need(t, "ip", "socat")
	ns := fmt.Sprintf("gatehouse-agent-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	if out, err := exec.Command("ip", "-n", ns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set lo up: %v\n%s", err, out)
	}
	return []string{"ip", "netns", "exec", ns}
}

// waitIn waits until addr accepts connections inside the namespace.
func waitIn(t *testing.T, wrap []string, addr string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if command(wrap, "socat", "-u", "OPEN:/dev/null", "TCP:"+addr).Run() == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s in the namespace", addr)
		}
	}
}

// daemon runs a helper process until the test ends.
func daemon(t *testing.T, cmd *exec.Cmd) *testpeer.Log {
	t.Helper()
	log := &testpeer.Log{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s log:\n%s", cmd.Args, log)
		}
	})
	return log
}

// startSlapdIn runs slapd on addr in the namespace with suffix
// dc=example,dc=com and user alice (password wonderland).
func startSlapdIn(t *testing.T, wrap []string, addr string) {
	slapd := testpeer.Program(t, "slapd", "slapd")
	dir := t.TempDir()
	var schema string
	for _, d := range []string{"/etc/ldap/schema", "/etc/openldap/schema"} {
		if _, err := os.Stat(d); err == nil {
			schema = d
		}
	}
	var b strings.Builder
	for _, s := range []string{"core", "cosine", "inetorgperson"} {
		fmt.Fprintf(&b, "include %s/%s.schema\n", schema, s)
	}
	for _, d := range []string{"/usr/lib/ldap", "/usr/lib/openldap"} {
		if _, err := os.Stat(filepath.Join(d, "back_mdb.la")); err == nil {
			fmt.Fprintf(&b, "modulepath %s\nmoduleload back_mdb\n", d)
			break
		}
	}
	fmt.Fprintf(&b, "pidfile %[1]s/slapd.pid\nargsfile %[1]s/slapd.args\ndatabase mdb\nmaxsize 10485760\nsuffix \"dc=example,dc=com\"\ndirectory %[1]s/db\n", dir)
	b.WriteString("access to attrs=userPassword by anonymous auth by * none\naccess to * by users read by * none\n")
	conf, ldif := filepath.Join(dir, "slapd.conf"), filepath.Join(dir, "init.ldif")
	os.Mkdir(filepath.Join(dir, "db"), 0o700)
	os.WriteFile(conf, []byte(b.String()), 0o600)
	os.WriteFile(ldif, []byte(`dn: dc=example,dc=com
objectClass: dcObject
objectClass: organization
o: example
dc: example

dn: uid=alice,dc=example,dc=com
objectClass: inetOrgPerson
uid: alice
cn: alice
sn: alice
userPassword: wonderland
`), 0o600)
	if out, err := exec.Command(slapd, "-T", "add", "-f", conf, "-l", ldif).CombinedOutput(); err != nil {
		t.Fatalf("slapadd: %v\n%s", err, out)
	}
	daemon(t, command(wrap, slapd, "-d", "stats", "-f", conf, "-h", "ldap://"+addr+"/"))
	waitIn(t, wrap, addr)
}

// TestAgentZeroIngress: nginx, slapd and the agent live in a network
// namespace nothing outside can connect into; the agent's only way out is
// a Unix-socket bridge to the edge's agents.listen. The edge cannot dial
// the targets, yet curl and ldapsearch reach them through it. With the
// agent killed, requests get the protocols' "unavailable" and nobody is
// blacklisted; the restarted agent serves again at once.
func TestAgentZeroIngress(t *testing.T) {
	need(t, "curl", "ldapsearch")
	testpeer.Program(t, "kamailio", "kamailio") // missing: skip (fail in CI) before anything starts
	sipp := testpeer.Program(t, "sipp", "sip-tester")
	wrap := agentNetns(t)
	startNginx(t, "127.0.0.5:8080", wrap...)
	waitIn(t, wrap, "127.0.0.5:8080")
	startSlapdIn(t, wrap, "127.0.0.6:389")
	sipE2E, err := filepath.Abs("../../protocols/sip/testdata/e2e")
	if err != nil {
		t.Fatal(err)
	}
	startKamailio(t, wrap, filepath.Join(sipE2E, "kamailio.cfg"), "127.0.0.6:5060")
	waitIn(t, wrap, "127.0.0.6:5060")

	// Proof of isolation: the edge's namespace reaches no target.
	for _, addr := range []string{"127.0.0.5:8080", "127.0.0.6:389", "127.0.0.6:5060"} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Fatalf("%s is reachable from the edge's namespace", addr)
		}
	}

	ca := testpki.NewCA(t, "edge")
	cert := ca.Server("edge.example.com", "127.0.0.1")
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	httpAddr, ldapAddr, sipAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	agentsAddr := freeAddrOn(t, "127.0.0.2")
	edge := start(t, fmt.Sprintf(`listen: {http: %q, ldap: %q, sip: %q}
tls: {certificates: [{cert: %s, key: %s}]}
agents:
  listen: %q
  heartbeat: 1s
  accounts: [{name: hq-lan, token_hash: %q, names: [hq.example.com, example.com]}]
services:
  - {name: hq.example.com, agent: hq-lan}
  - {name: example.com, agent: hq-lan}
blacklist: {threshold: 3}
`, httpAddr, ldapAddr, sipAddr, cert.CertFile, cert.KeyFile, agentsAddr, hash), httpAddr)

	// The bridge: the namespace's 127.0.0.1:7443 → a Unix socket → the edge.
	sock := filepath.Join(t.TempDir(), "edge.sock")
	daemon(t, exec.Command("socat", "UNIX-LISTEN:"+sock+",fork", "TCP:"+agentsAddr))
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatal("socat made no socket")
		}
	}
	daemon(t, command(wrap, "socat", "TCP-LISTEN:7443,bind=127.0.0.1,fork,reuseaddr", "UNIX-CONNECT:"+sock))
	waitIn(t, wrap, "127.0.0.1:7443")

	agentConfig := fmt.Sprintf(`edges: ["127.0.0.1:7443"]
account: hq-lan
token: s3cret
edge_fingerprint: %q
shutdown_timeout: 1s
services:
  - {name: hq.example.com, target: 127.0.0.5, ports: {http: 8080}}
  - {name: example.com, target: 127.0.0.6, ports: {ldap: 389, sip: 5060}}
`, configs.Fingerprint(cert.TLS.Leaf))
	ag := startAgent(t, agentConfig, wrap...)
	ag.waitLog(t, "tunnel up")

	get := func() (string, string) {
		return curl(t, "127.0.0.3", "-H", "Host: hq.example.com", "http://"+httpAddr+"/PBX0/MY")
	}
	ldap := func(extra ...string) (string, error) {
		_, port, _ := net.SplitHostPort(ldapAddr)
		cmd := exec.Command("ldapsearch", append(extra, "-x", "-H", "ldap://127.0.0.1:"+port, "-D", "uid=alice,dc=example,dc=com",
			"-w", "wonderland", "-b", "dc=example,dc=com", "(uid=alice)", "cn")...)
		cmd.Env = append(os.Environ(), "LDAPTLS_CACERT="+ca.File, "LDAPTLS_REQCERT=demand")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	phone := func() error {
		cmd := exec.Command(sipp, "-sf", filepath.Join(sipE2E, "register.xml"), "-t", "t1", "-i", "127.0.0.3",
			"-s", "bob", "-au", "bob", "-ap", "secret", "-key", "domain", "example.com", "-m", "3",
			"-nostdin", "-timeout", "10s", "-recv_timeout", "3s", sipAddr)
		cmd.Dir = t.TempDir()
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("sipp: %v\n%s", err, out[max(0, len(out)-1500):])
		}
		return nil
	}
	if err := phone(); err != nil {
		t.Fatalf("sipp through the edge: %v", err)
	}
	if code, body := get(); code != "200" || body != "nginx GET /PBX0/MY host=hq.example.com" {
		t.Fatalf("curl through the edge: %s %q", code, body)
	}
	if out, err := ldap(); err != nil || !strings.Contains(out, "cn: alice") {
		t.Fatalf("ldapsearch through the edge: %v\n%s", err, out)
	}
	// StartTLS with the edge (-ZZ: required), then on through the tunnel.
	if out, err := ldap("-ZZ"); err != nil || !strings.Contains(out, "cn: alice") {
		t.Fatalf("ldapsearch -ZZ through the edge: %v\n%s", err, out)
	}

	ag.cmd.Process.Kill()
	<-ag.done
	ag.done <- nil
	edge.waitLog(t, "agent tunnel down")
	for range 5 { // above blacklist.threshold
		if code, _ := get(); code != "503" {
			t.Fatalf("agent gone: %s, want 503", code)
		}
		if out, err := ldap(); err == nil || !strings.Contains(out, "unavailable (52)") {
			t.Fatalf("agent gone: ldapsearch %v\n%s", err, out)
		}
	}
	if err := phone(); err == nil || !strings.Contains(edge.log.String(), `type=sip service=example.com reason="service unavailable (no agent tunnel)"`) {
		t.Fatalf("agent gone: sipp %v, want it refused as unavailable", err)
	}
	if strings.Contains(edge.log.String(), "blocked") {
		t.Fatalf("a client was blocked while the agent was away:\n%s", edge.log)
	}

	ag = startAgent(t, agentConfig, wrap...)
	ag.waitLog(t, "tunnel up")
	up := time.Now()
	for {
		code, _ := get()
		if code == "200" {
			break
		}
		if time.Since(up) > 2*time.Second {
			t.Fatalf("service not back within 2 s of the agent's reconnect: %s", code)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := phone(); err != nil {
		t.Fatalf("sipp after the reconnect: %v", err)
	}
	if out, err := ldap(); err != nil || !strings.Contains(out, "cn: alice") {
		t.Fatalf("ldapsearch after the reconnect: %v\n%s", err, out)
	}
	if testing.Verbose() {
		t.Logf("edge log:\n%s", edge.log)
	}
}
