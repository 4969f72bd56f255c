package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
	"golang.org/x/crypto/bcrypt"
)

// discoveryPort returns a port free over UDP and TCP on 127.0.0.1 whose
// next port is free too, on 127.0.0.1 and 127.0.0.2 alike: the four
// sockets STUN opens with turn.alternate_address 127.0.0.2.
func discoveryPort(t *testing.T) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		free := p < 65535
		for _, a := range []string{"127.0.0.1:" + strconv.Itoa(p), "127.0.0.1:" + strconv.Itoa(p+1),
			"127.0.0.2:" + strconv.Itoa(p), "127.0.0.2:" + strconv.Itoa(p+1)} {
			if !free {
				break
			}
			pc, err := net.ListenPacket("udp", a)
			if err != nil {
				free = false
				break
			}
			pc.Close()
		}
		l.Close()
		if free {
			return p
		}
	}
	t.Fatal("no port free for the four discovery sockets")
	return 0
}

// TestNATDiscoveryE2E: the binary with turn.alternate_address answers
// coturn's RFC 5780 client and the classic RFC 3489 one on loopback,
// where both must find no NAT.
func TestNATDiscoveryE2E(t *testing.T) {
	natdiscovery := testpeer.Program(t, "turnutils_natdiscovery", "coturn")
	classic := testpeer.Program(t, "stun", "stun-client")
	port := discoveryPort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	ca := testpki.NewCA(t, "stun")
	cert := ca.Server("127.0.0.1")
	hash, err := bcrypt.GenerateFromPassword([]byte(adminPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	admin := freeAddr(t)
	in := start(t, fmt.Sprintf("turn:\n  listen: %q\n  alternate_address: 127.0.0.2\n"+
		"admin:\n  listen: %q\n  cert: %s\n  key: %s\n  metrics_public: true\n  users:\n    - {name: admin, password_hash: %q}\n",
		addr, admin, cert.CertFile, cert.KeyFile, hash), addr)

	out, err := exec.Command(natdiscovery, "-m", "-f", "-p", strconv.Itoa(port), "127.0.0.1").CombinedOutput()
	if err != nil {
		t.Fatalf("turnutils_natdiscovery: %v\n%s", err, out)
	}
	for _, want := range []string{
		"NAT with Endpoint Independent Mapping!",
		"NAT with Endpoint Independent Filtering!",
		fmt.Sprintf("Other addr: : 127.0.0.2:%d", port+1),
		fmt.Sprintf("Response origin: : 127.0.0.2:%d", port+1),
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("turnutils_natdiscovery: no %q in\n%s", want, out)
		}
	}

	out, err = exec.Command(classic, addr).CombinedOutput()
	if _, exit := err.(*exec.ExitError); err != nil && !exit { // its exit status is the NAT type
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "Primary: Open") {
		t.Errorf("stun (RFC 3489): NAT type not found open:\n%s", out)
	}
	if !strings.Contains(in.log.String(), "127.0.0.2:"+strconv.Itoa(port+1)) {
		t.Errorf("the serving log line does not list the discovery sockets:\n%s", in.log)
	}

	// Both forms and the changed answers are counted on /metrics.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	resp, err := client.Get("https://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{`gatehouse_turn_bindings_total{form="rfc5389"} `, `gatehouse_turn_bindings_total{form="rfc3489"} `, "gatehouse_turn_bindings_changed_total "} {
		i := strings.Index(string(body), "\n"+name)
		if i < 0 || strings.HasPrefix(string(body[i+1+len(name):]), "0\n") {
			t.Errorf("metrics: %s missing or 0", name)
		}
	}
}

// TestCheckAlternateAddress: `gatehouse check` names file, line and key of
// an alternate address this machine does not have.
func TestCheckAlternateAddress(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gatehouse.yaml")
	os.WriteFile(path, []byte("turn:\n  listen: \"127.0.0.1:3478\"\n  alternate_address: 192.0.2.77\n"), 0o600)
	out, err := exec.Command(binary, "check", "-config", path).CombinedOutput()
	if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != 1 {
		t.Fatalf("check: %v\n%s", err, out)
	}
	if want := path + ":3: turn.alternate_address: 192.0.2.77 is not an address of this machine"; !strings.Contains(string(out), want) {
		t.Errorf("check: no %q in\n%s", want, out)
	}
}
