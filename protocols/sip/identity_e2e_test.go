package sip

import (
	"context"
	"fmt"
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

// TestKamailioIdentity is check_certificate against a real registrar:
// Kamailio listens on a plain port and, behind a socat TLS server, on a
// "TLS" port, and logs the port every REGISTER arrives on. sipp phones
// reach gatehouse's sips listener through socat with alice's client
// certificate. Only a REGISTER whose address of record (To) is alice, once,
// may arrive on the TLS port.
func TestKamailioIdentity(t *testing.T) {
	kamailio := testpeer.Program(t, "kamailio", "kamailio")
	sipp := testpeer.Program(t, "sipp", "sip-tester")
	socat := testpeer.Program(t, "socat", "socat")
	e2e, err := filepath.Abs(filepath.Join("testdata", "e2e"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	plain, behindTLS := freePort(t), freePort(t)
	logFile := filepath.Join(t.TempDir(), "kamailio.log")
	kamLog, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer kamLog.Close()
	run := t.TempDir()
	startProcess(t, kamailio, kamLog, "-f", filepath.Join(e2e, "kamailio.cfg"), "-DD", "-E", "-Y", run,
		"-l", "tcp:127.0.0.1:"+plain, "-l", "tcp:127.0.0.1:"+behindTLS, "-m", "32", "-M", "4")
	testpeer.WaitListening(t, "127.0.0.1:"+plain)
	testpeer.WaitListening(t, "127.0.0.1:"+behindTLS)

	ca := testpki.NewCA(t, "sip-identity")
	server := ca.Server("example.com", "127.0.0.1")
	// The registrar's TLS port: socat terminates TLS for Kamailio.
	tlsPort := freePort(t)
	startProcess(t, socat, nil, "OPENSSL-LISTEN:"+tlsPort+",bind=127.0.0.1,reuseaddr,fork,verify=0,cert="+server.CertFile+",key="+server.KeyFile,
		"TCP:127.0.0.1:"+behindTLS)
	testpeer.WaitListening(t, "127.0.0.1:"+tlsPort)

	srv, g := startGatehouse(t, fmt.Sprintf(`listen:
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
`, freePort(t), server.CertFile, server.KeyFile, ca.File, ca.File, plain, tlsPort))
	alice := ca.Client("alice")
	phone := startSocat(t, "127.0.0.4", srv.Addr("sips").String(), ca.File, "cert="+alice.CertFile, "key="+alice.KeyFile)

	sippRun := func(scenario string, keys ...string) error {
		args := []string{"-sf", filepath.Join(e2e, scenario), "-t", "t1", "-i", "127.0.0.4", "-s", "alice",
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
	// arrived waits for Kamailio's line for a REGISTER of to by from and
	// returns the port it names.
	arrived := func(to, from string) string {
		want := fmt.Sprintf("REGISTER to=%s from=%s port=", to, from)
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			b, _ := os.ReadFile(logFile)
			if _, rest, ok := strings.Cut(string(b), want); ok {
				p, _, _ := strings.Cut(rest, "\n")
				return strings.TrimSpace(p)
			}
		}
		t.Fatalf("Kamailio never logged %q", want)
		return ""
	}

	for _, tc := range []struct {
		name, scenario string
		keys           []string
		to, from       string // what Kamailio logs; "" when gatehouse answers itself
		port           string
	}{
		{"own registration", "identity.xml", []string{"from", "alice", "to", "alice"}, "alice", "alice", behindTLS},
		{"compact forms", "compact.xml", nil, "alice", "alice", behindTLS},
		{"From alice, To bob", "identity.xml", []string{"from", "alice", "to", "bob"}, "bob", "alice", plain},
		{"From bob, To alice", "identity.xml", []string{"from", "bob", "to", "alice"}, "alice", "bob", plain},
		{"From bob, then f alice", "duplicate.xml", []string{"from", "bob", "second", "f", "secondfrom", "alice", "to", "alice"}, "", "", ""},
		{"From alice, then From bob", "duplicate.xml", []string{"from", "alice", "second", "From", "secondfrom", "bob", "to", "alice"}, "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := sippRun(tc.scenario, tc.keys...); err != nil {
				t.Fatal(err)
			}
			if tc.to == "" {
				return
			}
			if got := arrived(tc.to, tc.from); got != tc.port {
				t.Fatalf("REGISTER to %s from %s arrived on port %s; TLS port is %s, plain %s", tc.to, tc.from, got, behindTLS, plain)
			}
		})
	}
	// The two refused REGISTERs never reached the registrar, and were counted.
	b, _ := os.ReadFile(logFile)
	if strings.Contains(string(b), "to=alice from=bob port="+behindTLS) || strings.Count(string(b), "REGISTER to=") != 4 {
		t.Fatalf("registrar log:\n%s", b)
	}
	dups := 0
	for _, r := range g.reasons() {
		if r == "127.0.0.4 : unreadable request (duplicate From header)" { // refused before routing: no service yet
			dups++
		}
	}
	if dups != 2 {
		t.Fatalf("events %q", g.reasons())
	}
}

// startProcess runs a peer in its own process group until the test ends,
// its output to out (nil: discarded).
func startProcess(t *testing.T, prog string, out *os.File, args ...string) {
	t.Helper()
	cmd := exec.Command(prog, args...)
	if out != nil {
		cmd.Stdout, cmd.Stderr = out, out
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its children go with it
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		cmd.Wait()
	}()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
}
