package sip

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// TestKamailioIdentity is check_certificate against a real registrar (see
// startKamailioTLS) with sipp phones, which reach gatehouse's sips listener
// through socat with alice's client certificate. Only a REGISTER whose
// address of record (To) is alice, once, may arrive on the TLS port.
func TestKamailioIdentity(t *testing.T) {
	sipp := testpeer.Program(t, "sipp", "sip-tester")
	k := startKamailioTLS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	alice := k.ca.Client("alice")
	phone := startSocat(t, "127.0.0.4", k.srv.Addr("sips").String(), k.ca.File, "cert="+alice.CertFile, "key="+alice.KeyFile)

	sippRun := func(scenario string, keys ...string) error {
		args := []string{"-sf", filepath.Join(k.dir, scenario), "-t", "t1", "-i", "127.0.0.4", "-s", "alice",
			"-key", "domain", "example.com", "-m", "1", "-nostdin", "-timeout", "10s", "-recv_timeout", "3s"}
		for i := 0; i+1 < len(keys); i += 2 {
			args = append(args, "-key", keys[i], keys[i+1])
		}
		cmd := exec.CommandContext(ctx, sipp, append(args, phone)...)
		cmd.Dir = t.TempDir()
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("sipp %s %v: %v\n%s", scenario, keys, err, lastLines(out, 15))
		}
		return nil
	}

	for _, tc := range []struct {
		name, scenario string
		keys           []string
		to, from       string // what Kamailio logs; "" when gatehouse answers itself
		port           string
	}{
		{"own registration", "identity.xml", []string{"from", "alice", "to", "alice"}, "alice", "alice", k.behindTLS},
		{"compact forms", "compact.xml", nil, "alice", "alice", k.behindTLS},
		{"From alice, To bob", "identity.xml", []string{"from", "alice", "to", "bob"}, "bob", "alice", k.plain},
		{"From bob, To alice", "identity.xml", []string{"from", "bob", "to", "alice"}, "alice", "bob", k.plain},
		{"From bob, then f alice", "duplicate.xml", []string{"from", "bob", "second", "f", "secondfrom", "alice", "to", "alice"}, "", "", ""},
		{"From alice, then From bob", "duplicate.xml", []string{"from", "alice", "second", "From", "secondfrom", "bob", "to", "alice"}, "", "", ""},
		// A From host that is no SIP host: an empty label, and a non-ASCII
		// byte sipgo takes as a host.
		{"From host with an empty label", "fromhost.xml", []string{"from", "alice", "to", "alice", "fromhost", "example..com"}, "", "", ""},
		{"From host not ASCII", "fromhost.xml", []string{"from", "alice", "to", "alice", "fromhost", "ex\u00e4mple.com"}, "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			since := k.logSize()
			if err := sippRun(tc.scenario, tc.keys...); err != nil {
				t.Fatal(err)
			}
			if tc.to == "" {
				return
			}
			if got := k.arrived(t, since, tc.to, tc.from); got != tc.port {
				t.Fatalf("REGISTER to %s from %s arrived on port %s; TLS port is %s, plain %s", tc.to, tc.from, got, k.behindTLS, k.plain)
			}
		})
	}
	// The four refused REGISTERs never reached the registrar, and were counted.
	b := k.log()
	if strings.Contains(b, "to=alice from=bob port="+k.behindTLS) || strings.Count(b, "REGISTER to=") != 4 {
		t.Fatalf("registrar log:\n%s", b)
	}
	dups, badHosts := 0, 0
	for _, r := range k.g.reasons() {
		switch r { // refused before routing: no service yet
		case "127.0.0.4 : unreadable request (duplicate From header)":
			dups++
		case "127.0.0.4 : unreadable request (From host malformed)":
			badHosts++
		}
	}
	if dups != 2 || badHosts != 2 {
		t.Fatalf("events %q", k.g.reasons())
	}
}

// kamailioTLS is the registrar of the identity tests and gatehouse in front
// of it. Kamailio (testdata/e2e/kamailio.cfg) listens on a plain port and,
// behind a socat TLS server, on a "TLS" port, and logs the port every
// REGISTER arrives on. Gatehouse's sips listener routes example.com to it
// with check_certificate, presenting a server certificate for example.com
// and 127.0.0.1 and trusting client certificates from ca.
type kamailioTLS struct {
	dir              string // testdata/e2e, absolute
	plain, behindTLS string // Kamailio's ports
	logFile          string
	ca               *testpki.CA
	srv              *proxy.Server
	g                guard
}

func startKamailioTLS(t *testing.T) *kamailioTLS {
	t.Helper()
	kamailio := testpeer.Program(t, "kamailio", "kamailio")
	socat := testpeer.Program(t, "socat", "socat")
	dir, err := filepath.Abs(filepath.Join("testdata", "e2e"))
	if err != nil {
		t.Fatal(err)
	}
	k := &kamailioTLS{dir: dir, plain: freePort(t), behindTLS: freePort(t), logFile: filepath.Join(t.TempDir(), "kamailio.log")}
	kamLog, err := os.Create(k.logFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		kamLog.Close()
		if t.Failed() {
			t.Logf("kamailio:\n%s", lastLines([]byte(k.log()), 40))
		}
	})
	startProcess(t, kamailio, kamLog, "-f", filepath.Join(dir, "kamailio.cfg"), "-DD", "-E", "-Y", t.TempDir(),
		"-l", "tcp:127.0.0.1:"+k.plain, "-l", "tcp:127.0.0.1:"+k.behindTLS, "-m", "32", "-M", "4")
	testpeer.WaitListening(t, "127.0.0.1:"+k.plain)
	testpeer.WaitListening(t, "127.0.0.1:"+k.behindTLS)

	k.ca = testpki.NewCA(t, "sip-identity")
	server := k.ca.Server("example.com", "127.0.0.1")
	// The registrar's TLS port: socat terminates TLS for Kamailio.
	tlsPort := freePort(t)
	startProcess(t, socat, nil, "OPENSSL-LISTEN:"+tlsPort+",bind=127.0.0.1,reuseaddr,fork,verify=0,cert="+server.CertFile+",key="+server.KeyFile,
		"TCP:127.0.0.1:"+k.behindTLS)
	testpeer.WaitListening(t, "127.0.0.1:"+tlsPort)

	k.srv, k.g = startGatehouse(t, fmt.Sprintf(`listen:
  sips: "127.0.0.1:%s"
tls:
  certificates: [{cert: %s, key: %s}]
  client_cas: [%s]
  target_cas: [%s]
services:
  - name: example.com
    target: 127.0.0.1
    ports: {sip: %s, sips: %s}
    check_certificate: true
`, freePort(t), server.CertFile, server.KeyFile, k.ca.File, k.ca.File, k.plain, tlsPort))
	return k
}

// log is what Kamailio has logged so far.
func (k *kamailioTLS) log() string {
	b, _ := os.ReadFile(k.logFile)
	return string(b)
}

// logSize marks where the log ends now, for arrived.
func (k *kamailioTLS) logSize() int { return len(k.log()) }

// arrived waits for Kamailio's line, after offset since of its log, for a
// REGISTER of to by from, and returns the port it names.
func (k *kamailioTLS) arrived(t *testing.T, since int, to, from string) string {
	t.Helper()
	want := fmt.Sprintf("REGISTER to=%s from=%s port=", to, from)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, rest, ok := strings.Cut(k.log()[since:], want); ok {
			p, _, _ := strings.Cut(rest, "\n")
			return strings.TrimSpace(p)
		}
	}
	t.Fatalf("Kamailio never logged %q", want)
	return ""
}

// startProcess runs a peer in its own process group until the test ends,
// its output to out (nil: discarded).
func startProcess(t *testing.T, prog string, out *os.File, args ...string) {
	t.Helper()
	cmd := exec.Command(prog, args...)
	if out != nil {
		cmd.Stdout, cmd.Stderr = out, out
	}
	testpeer.StartGroup(t, prog, cmd)
}
