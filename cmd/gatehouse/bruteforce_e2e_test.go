package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
)

// A keep-alive brute force on SIP and LDAP: password guesses over one
// connection, each rejected by the real target (Kamailio's 401, slapd's
// invalidCredentials), which the blacklist counts. With threshold 3 the
// fourth rejection blocks the client; its connection is closed at once, so
// no request after the block reaches the target: the targets' own logs
// count what reached them.

// startRegistrar runs Kamailio with testdata/registrar.cfg on a TCP port
// of 127.0.0.1 and returns its address and log.
func startRegistrar(t *testing.T) (string, *testpeer.Log) {
	t.Helper()
	testpeer.Program(t, "kamailio", "kamailio") // missing: skip (fail in CI) before anything starts
	cfg, err := filepath.Abs(filepath.Join("testdata", "registrar.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	log := startKamailio(t, nil, cfg, addr)
	testpeer.WaitListening(t, addr)
	return addr, log
}

// startDirectory runs slapd on 127.0.0.1 (plain LDAP only) with user
// uid=alice,dc=example,dc=com, logging every operation (-d stats).
func startDirectory(t *testing.T) (string, *testpeer.Log) {
	t.Helper()
	slapd := testpeer.Program(t, "slapd", "slapd")
	var schema string
	for _, d := range []string{"/etc/ldap/schema", "/etc/openldap/schema"} {
		if _, err := os.Stat(d); err == nil {
			schema = d
			break
		}
	}
	if schema == "" {
		t.Fatal("no OpenLDAP schema directory")
	}
	dir := t.TempDir()
	var conf strings.Builder
	for _, s := range []string{"core", "cosine", "inetorgperson"} {
		fmt.Fprintf(&conf, "include %s\n", filepath.Join(schema, s+".schema"))
	}
	for _, d := range []string{"/usr/lib/ldap", "/usr/lib/openldap"} { // Debian builds backends as modules
		if _, err := os.Stat(filepath.Join(d, "back_mdb.la")); err == nil {
			fmt.Fprintf(&conf, "modulepath %s\nmoduleload back_mdb\n", d)
			break
		}
	}
	fmt.Fprintf(&conf, "pidfile %s/slapd.pid\nargsfile %s/slapd.args\n", dir, dir)
	fmt.Fprintf(&conf, "database mdb\nmaxsize 10485760\nsuffix \"dc=example,dc=com\"\ndirectory %s/db\n", dir)
	conf.WriteString("access to attrs=userPassword by anonymous auth by * none\naccess to * by users read by * none\n")
	ldif := "dn: dc=example,dc=com\nobjectClass: dcObject\nobjectClass: organization\no: example\ndc: example\n\n" +
		"dn: uid=alice,dc=example,dc=com\nobjectClass: inetOrgPerson\nuid: alice\ncn: alice\nsn: alice\nuserPassword: alice-pw\n"
	for name, data := range map[string]string{"slapd.conf": conf.String(), "init.ldif": ldif} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(slapd, "-T", "add", "-f", filepath.Join(dir, "slapd.conf"), "-l", filepath.Join(dir, "init.ldif")).CombinedOutput(); err != nil {
		t.Fatalf("slapadd: %v\n%s", err, out)
	}
	addr := freeAddr(t)
	log := &testpeer.Log{}
	cmd := exec.Command(slapd, "-d", "stats", "-f", filepath.Join(dir, "slapd.conf"), "-h", "ldap://"+addr+"/")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("slapd:\n%s", log)
		}
	})
	testpeer.WaitListening(t, addr)
	return addr, log
}

// settled returns count() once it has not changed for closeGrace and a
// bit: the blocked connection's last second of writing is over.
func settled(count func() int) int {
	n := count()
	for {
		time.Sleep(1500 * time.Millisecond)
		if m := count(); m != n {
			n = m
			continue
		}
		return n
	}
}

func TestKeepAliveBruteForceOnSIPAndLDAPStopsAtBlock(t *testing.T) {
	sipp := testpeer.Program(t, "sipp", "sip-tester")
	registrar, kamLog := startRegistrar(t)
	directory, slapdLog := startDirectory(t)
	sipAddr, ldapAddr := freeAddr(t), freeAddr(t)
	in := start(t, fmt.Sprintf(`listen:
  sip: %q
  ldap: %q
services:
  - name: example.com
    target: 127.0.0.1
    ports: {sip: %s, ldap: %s}
blacklist:
  threshold: 3
  expiration: 10m
`, sipAddr, ldapAddr, portOf(registrar), portOf(directory)), sipAddr)
	testpeer.WaitListening(t, ldapAddr)

	t.Run("sip", func(t *testing.T) {
		registers := func() int { return strings.Count(kamLog.String(), "REGISTER received from=alice") }
		scenario, err := filepath.Abs(filepath.Join("testdata", "guess.xml"))
		if err != nil {
			t.Fatal(err)
		}
		// 30 guesses, one after the other, all over one TCP connection (t1).
		cmd := exec.Command(sipp, "-sf", scenario, "-t", "t1", "-i", "127.0.4.1", "-s", "alice", "-au", "alice", "-ap", "guess",
			"-key", "domain", "example.com", "-m", "30", "-l", "1", "-nostdin", "-timeout", "15s", "-recv_timeout", "3s", sipAddr)
		cmd.Dir = t.TempDir()
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("sipp made all 30 guesses:\n%s", lastLines(out, 20))
		}
		in.waitLog(t, "blocked client's connections closed\" client=127.0.4.1")
		// Each guess is a REGISTER challenged and one with credentials
		// rejected; the fourth rejection blocks.
		if n := settled(registers); n != 2*4 {
			t.Errorf("the registrar received %d REGISTERs, want 8 (4 guesses)\nsipp:\n%s", n, lastLines(out, 20))
		}
		// A new connection is refused at accept: nothing more arrives.
		before := registers()
		cmd = exec.Command(sipp, "-sf", scenario, "-t", "t1", "-i", "127.0.4.1", "-s", "alice", "-au", "alice", "-ap", "guess",
			"-key", "domain", "example.com", "-m", "1", "-nostdin", "-timeout", "5s", "-recv_timeout", "2s", sipAddr)
		cmd.Dir = t.TempDir()
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Errorf("the blocked client guessed again:\n%s", lastLines(out, 20))
		}
		if n := settled(registers); n != before {
			t.Errorf("%d REGISTERs reached the registrar after the block", n-before)
		}
	})

	t.Run("ldap", func(t *testing.T) {
		binds := func() int { return strings.Count(slapdLog.String(), `BIND dn="uid=alice,dc=example,dc=com"`) }
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.4.2")}, Timeout: 3 * time.Second}
		c, err := goldap.DialURL("ldap://"+ldapAddr, goldap.DialWithDialer(d))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetTimeout(3 * time.Second)
		rejected, failed := 0, error(nil)
		for i := range 30 {
			err := c.Bind("uid=alice,dc=example,dc=com", fmt.Sprintf("guess-%d", i))
			if goldap.IsErrorWithCode(err, goldap.LDAPResultInvalidCredentials) {
				rejected++
				continue
			}
			failed = err
			break
		}
		if failed == nil {
			t.Fatalf("all 30 guesses answered over the connection (%d rejected)", rejected)
		}
		t.Logf("%d guesses rejected, then: %v", rejected, failed)
		in.waitLog(t, "blocked client's connections closed\" client=127.0.4.2")
		if n := settled(binds); n != 4 {
			t.Errorf("slapd received %d binds, want 4 (threshold+1)", n)
		}
		// A new connection is refused at accept.
		before := binds()
		if c2, err := goldap.DialURL("ldap://"+ldapAddr, goldap.DialWithDialer(d)); err == nil {
			c2.SetTimeout(3 * time.Second)
			if err := c2.Bind("uid=alice,dc=example,dc=com", "alice-pw"); err == nil {
				t.Error("the blocked client bound on a new connection")
			} else if !errors.Is(err, net.ErrClosed) {
				t.Logf("new connection: %v", err)
			}
			c2.Close()
		}
		if n := settled(binds); n != before {
			t.Errorf("%d binds reached slapd after the block", n-before)
		}
	})
}

// lastLines returns the last n lines of b.
func lastLines(b []byte, n int) []byte {
	lines := strings.SplitAfter(string(b), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return []byte(strings.Join(lines, ""))
}
