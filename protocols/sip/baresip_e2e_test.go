package sip

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
)

// TestBaresipIdentity is check_certificate with a real SIP phone: baresip
// registers over TLS to gatehouse's sips listener, with alice's client
// certificate or none, to Kamailio (startKamailioTLS). Only alice's own
// registration with her certificate may arrive on the registrar's TLS port;
// gatehouse forwards the others to the plain port (README, routing rules).
func TestBaresipIdentity(t *testing.T) {
	baresip := testpeer.Program(t, "baresip", "baresip-core")
	k := startKamailioTLS(t)
	alice := k.ca.Client("alice")
	// baresip reads certificate and key from one file (sip_certificate).
	aliceCert, err := os.ReadFile(alice.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	aliceKey, err := os.ReadFile(alice.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	alicePEM := filepath.Join(t.TempDir(), "alice.pem")
	if err := os.WriteFile(alicePEM, append(aliceCert, aliceKey...), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, user, cert, port string
	}{
		{"alice's certificate, alice", "alice", alicePEM, k.behindTLS},
		{"alice's certificate, bob", "bob", alicePEM, k.plain},
		{"no certificate, alice", "alice", "", k.plain},
	} {
		t.Run(tc.name, func(t *testing.T) {
			since := k.logSize()
			out := runBaresip(t, baresip, tc.cert, k.ca.File, tc.user, k.srv.Addr("sips").String())
			if got := k.arrived(t, since, tc.user, tc.user); got != tc.port {
				t.Fatalf("REGISTER of %s arrived on port %s; TLS port is %s, plain %s", tc.user, got, k.behindTLS, k.plain)
			}
			// The digest exchange went through both ways: baresip is registered.
			want := fmt.Sprintf("%s@example.com: {0/TLS/v4} 200 OK", tc.user)
			for deadline := time.Now().Add(5 * time.Second); !strings.Contains(readFile(out), want); time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("baresip never said %q:\n%s", want, readFile(out))
				}
			}
		})
	}
	if r := k.g.reasons(); len(r) != 0 {
		t.Fatalf("events %q", r)
	}
}

// runBaresip runs baresip until the test ends, registering user@example.com
// over TLS through gatehouse at addr, with the certificate and key in
// certPEM ("": none). It returns the file its output goes to.
//
// baresip 1.0.0 (libre 1.1.0) presents the client certificate but does not
// verify gatehouse's: it registers as readily to a self-signed server, so
// sip_cafile only completes its own chain. Gatehouse's certificate names
// 127.0.0.1, the address it dials, all the same. Its TCP connections come
// from 127.0.0.1 whatever sip_listen says.
func runBaresip(t *testing.T, baresip, certPEM, caFile, user, addr string) string {
	t.Helper()
	return runBaresipWith(t, baresip, certPEM, caFile, user, "secret", addr)
}

// runBaresipWith is runBaresip with the account's password.
func runBaresipWith(t *testing.T, baresip, certPEM, caFile, user, password, addr string) string {
	t.Helper()
	dir := t.TempDir()
	config := "sip_listen 127.0.0.5:0\nsip_cafile " + caFile + "\n" +
		// No audio, no user interface: accounts only.
		"module_path /usr/lib/baresip/modules\nmodule_tmp account.so\n" +
		// Every address is an IP; should it ever ask, it asks loopback.
		"dns_server 127.0.0.1:53\n"
	if certPEM != "" {
		config += "sip_certificate " + certPEM + "\n"
	}
	_, port, _ := strings.Cut(addr, ":")
	accounts := fmt.Sprintf("<sip:%s@example.com;transport=tls>;auth_pass=%s;outbound=\"sip:127.0.0.1:%s;transport=tls\";regint=60\n", user, password, port)
	for name, text := range map[string]string{"config": config, "accounts": accounts} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out, err := os.Create(filepath.Join(dir, "baresip.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	// -n: its local address is loopback, not the first interface's; -t: it
	// quits by itself should the test not stop it.
	startProcess(t, baresip, out, "-f", dir, "-n", "127.0.0.5", "-t", "20")
	return out.Name()
}

func readFile(name string) string {
	b, _ := os.ReadFile(name)
	return string(b)
}

// TestBaresipWrongPassword: a phone with a wrong password is one
// suspicious event, not one per challenge. baresip answers every new nonce
// Kamailio sends with the same wrong credentials on the same Call-ID, so
// one mistake is a burst of rejected REGISTERs.
func TestBaresipWrongPassword(t *testing.T) {
	baresip := testpeer.Program(t, "baresip", "baresip-core")
	k := startKamailioTLS(t)
	out := runBaresipWith(t, baresip, "", k.ca.File, "alice", "wrong", k.srv.Addr("sips").String())
	// Kamailio saw more than one REGISTER of alice: baresip retried.
	for deadline := time.Now().Add(10 * time.Second); strings.Count(k.log(), "REGISTER to=alice from=alice") < 3; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("baresip did not retry; kamailio saw %d REGISTERs\nbaresip: %s", strings.Count(k.log(), "REGISTER to=alice from=alice"), readFile(out))
		}
	}
	time.Sleep(2 * time.Second) // let the burst end
	retries := strings.Count(k.log(), "REGISTER to=alice from=alice")
	got := k.g.reasons()
	t.Logf("%d REGISTERs reached Kamailio; events %q", retries, got)
	if len(got) != 1 || !strings.Contains(got[0], "credentials rejected by target") {
		t.Fatalf("%d rejected REGISTERs made events %q, want exactly one", retries, got)
	}
}
