package testpeer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Pebble is Debian's Pebble (an RFC 8555 test CA) on loopback, with
// pebble-challtestsrv as its DNS server: every name resolves to 127.0.0.1
// unless ResolveTo says otherwise. Pebble validates HTTP-01 on HTTPPort and
// TLS-ALPN-01 on TLSPort of 127.0.0.1, where the test's gatehouse listens.
type Pebble struct {
	Directory string // the ACME directory URL
	HTTPPort  int
	TLSPort   int
	mgmt      string // challtestsrv's management address
	Log       *Log   // Pebble's output ("There are now N orders in the db")
}

// StartPebble runs Pebble with an API certificate from apiCert and apiKey
// (valid for 127.0.0.1; the test gives their CA as tls.acme.ca_root).
func StartPebble(t testing.TB, apiCert, apiKey string) *Pebble {
	t.Helper()
	pebble := Program(t, "pebble", "pebble")
	challsrv := Program(t, "pebble-challtestsrv", "pebble")
	p := &Pebble{HTTPPort: FreePort(t), TLSPort: FreePort(t)}
	dns := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	p.mgmt = fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	start(t, challsrv, nil, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "", "-dns01", dns,
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-management", p.mgmt)
	WaitListening(t, p.mgmt)

	listen := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	conf, _ := json.Marshal(map[string]any{"pebble": map[string]any{
		"listenAddress": listen, "managementListenAddress": fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
		"certificate": apiCert, "privateKey": apiKey,
		"httpPort": p.HTTPPort, "tlsPort": p.TLSPort, "ocspResponderURL": "", "externalAccountBindingRequired": false,
	}})
	path := filepath.Join(t.TempDir(), "pebble.json")
	if err := os.WriteFile(path, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	// No random sleeps before validating, no nonces rejected at random:
	// the tests are about gatehouse, not about Pebble's chaos.
	p.Log = start(t, pebble, []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0"},
		"-config", path, "-dnsserver", dns)
	WaitListening(t, listen)
	p.Directory = "https://" + listen + "/dir"
	return p
}

func start(t testing.TB, prog string, env []string, args ...string) *Log {
	t.Helper()
	log := &Log{}
	cmd := exec.Command(prog, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s:\n%s", filepath.Base(prog), log)
		}
	})
	return log
}

// ResolveTo points name at addr in Pebble's DNS.
func (p *Pebble) ResolveTo(t testing.TB, name, addr string) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"host": name + ".", "addresses": []string{addr}})
	resp, err := http.Post("http://"+p.mgmt+"/add-a", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("add-a: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("add-a: %s", resp.Status)
	}
}
