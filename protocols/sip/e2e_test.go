package sip

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
)

// TestKamailioSipp is the end-to-end test: sipp phones register through
// gatehouse with Kamailio (testdata/e2e/kamailio.cfg) as the registrar. A
// REGISTER brute force from 127.0.0.2 gets that address blacklisted while
// 127.0.0.3 keeps registering.
func TestKamailioSipp(t *testing.T) {
	kamailio := testpeer.Program(t, "kamailio", "kamailio")
	sipp := testpeer.Program(t, "sipp", "sip-tester")
	e2e, err := filepath.Abs(filepath.Join("testdata", "e2e"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	registrar := "127.0.0.1:" + freePort(t)
	run := t.TempDir()
	testpeer.StartGroup(t, "kamailio", exec.Command(kamailio, "-f", filepath.Join(e2e, "kamailio.cfg"), "-DD", "-E",
		"-Y", run, "-l", "tcp:"+registrar, "-m", "32", "-M", "4"))
	testpeer.WaitListening(t, registrar)

	// Gatehouse on sip and sips; the registrar has a plain port only, so
	// TLS clients without a certificate reach it over TCP (the mapping rule).
	ca := testpki.NewCA(t, "sip-e2e")
	cert := ca.Server("example.com", "127.0.0.1")
	srv, g := startGatehouse(t, fmt.Sprintf(`listen:
  sip: "127.0.0.1:%s"
  sips: "127.0.0.1:%s"
tls:
  certificates: [{cert: %s, key: %s}]
services:
  - name: example.com
    target: 127.0.0.1
    ports: {sip: %s}
blacklist:
  threshold: 5
`, freePort(t), freePort(t), cert.CertFile, cert.KeyFile, port(t, registrar)))
	gatehouse := srv.Addr("sip").String()
	// phone runs count registrations from src through gatehouse over one
	// TCP connection; it fails when sipp does.
	sippTo := func(to, src, scenario, user, password string, count int) error {
		cmd := exec.CommandContext(ctx, sipp, "-sf", filepath.Join(e2e, scenario),
			"-t", "t1", "-i", src, "-s", user, "-au", user, "-ap", password,
			"-key", "domain", "example.com", "-m", fmt.Sprint(count),
			"-nostdin", "-timeout", "10s", "-recv_timeout", "3s", to)
		cmd.Dir = t.TempDir() // sipp writes its logs beside it
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("sipp %s from %s: %v\n%s", scenario, src, err, lastLines(out, 15))
		}
		return nil
	}
	phone := func(src, scenario, user, password string, count int) error {
		return sippTo(gatehouse, src, scenario, user, password, count)
	}

	if err := phone("127.0.0.3", "register.xml", "bob", "secret", 3); err != nil {
		t.Fatalf("bob cannot register: %v", err)
	}
	// Over TLS: Debian's sipp has no TLS, so socat on 127.0.0.4 wraps its
	// TCP connection in TLS to gatehouse's sips listener (verifying the
	// certificate), from the same address.
	tlsFront := startSocat(t, "127.0.0.4", srv.Addr("sips").String(), ca.File)
	if err := sippTo(tlsFront, "127.0.0.4", "register.xml", "bob", "secret", 3); err != nil {
		t.Fatalf("bob cannot register over TLS: %v", err)
	}
	if err := phone("127.0.0.2", "guess.xml", "alice", "guess", 8); err != nil {
		t.Fatalf("the guesses were not refused by the registrar: %v", err)
	}
	for deadline := time.Now().Add(5 * time.Second); !g.Blocked(netip.MustParseAddr("127.0.0.2")); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("127.0.0.2 is not blocked; events %q", g.reasons())
		}
	}
	if err := phone("127.0.0.2", "register.xml", "alice", "secret", 1); err == nil {
		t.Fatal("the blocked attacker registered")
	}
	if err := phone("127.0.0.3", "register.xml", "bob", "secret", 3); err != nil {
		t.Fatalf("bob cannot register after the attack: %v", err)
	}
	if g.Blocked(netip.MustParseAddr("127.0.0.3")) {
		t.Fatal("127.0.0.3 is blocked")
	}
	for _, r := range g.reasons() {
		// The readiness probe of socat's port made it open a TLS connection
		// that closed without a message: suspicious, as it should be.
		probe := r == "127.0.0.4 : closed before first packet"
		if r != "127.0.0.2 example.com: credentials rejected by target (REGISTER 401)" && !probe {
			t.Errorf("unexpected event %q", r)
		}
	}
}

// startSocat listens on src and forwards each connection over TLS to
// addr from src, verifying the server against caFile; it returns the
// address to connect to. opts are more socat OPENSSL options (a client
// certificate: "cert=...", "key=...").
func startSocat(t *testing.T, src, addr, caFile string, opts ...string) string {
	t.Helper()
	socat := testpeer.Program(t, "socat", "socat")
	listen := src + ":" + freePort(t)
	_, p, _ := strings.Cut(listen, ":")
	testpeer.StartGroup(t, "socat", exec.Command(socat, "TCP-LISTEN:"+p+",bind="+src+",reuseaddr,fork",
		"OPENSSL:"+addr+",bind="+src+",cafile="+caFile+",commonname=example.com,verify=1"+strings.Join(append([]string{""}, opts...), ",")))
	testpeer.WaitListening(t, listen)
	return listen
}

func lastLines(b []byte, n int) []byte {
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	return bytes.Join(lines[max(0, len(lines)-n):], []byte("\n"))
}
