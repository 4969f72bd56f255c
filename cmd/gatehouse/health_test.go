package main

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
)

// healthConfig writes a configuration whose admin listener is at listen.
// The admin certificate only has to load: the probe does not verify the
// certificate the listener presents (see probe).
func healthConfig(t *testing.T, listen string) string {
	t.Helper()
	ca := testpki.NewCA(t, "health")
	admin := ca.Server("gatehouse.example.com")
	hash, err := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "gatehouse.yaml")
	cfg := fmt.Sprintf(`admin:
  listen: %q
  cert: %s
  key: %s
  users:
    - {name: admin, password_hash: %q}
`, listen, admin.CertFile, admin.KeyFile, hash)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func runHealth(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(append([]string{"health"}, args...), strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// healthServer is an admin listener stand-in: TLS with its own self-signed
// certificate (as an appliance's often is), answering /healthz with status.
func healthServer(t *testing.T, status int, body string) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	})
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestHealth(t *testing.T) {
	t.Run("healthy, self-signed", func(t *testing.T) {
		srv := healthServer(t, http.StatusOK, "ok")
		code, out, errs := runHealth(t, "-config", healthConfig(t, srv.Listener.Addr().String()))
		if code != 0 || !strings.Contains(out, "/healthz: ok") {
			t.Fatalf("exit %d, stdout %q, stderr %q; want 0 and ok", code, out, errs)
		}
	})

	t.Run("wildcard listen is probed on loopback", func(t *testing.T) {
		srv := healthServer(t, http.StatusOK, "ok")
		_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
		for _, listen := range []string{":" + port, "0.0.0.0:" + port, "[::]:" + port} {
			code, out, errs := runHealth(t, "-config", healthConfig(t, listen))
			if code != 0 || !strings.Contains(out, "https://127.0.0.1:"+port+"/healthz: ok") {
				t.Errorf("admin.listen %q: exit %d, stdout %q, stderr %q; want 0 via 127.0.0.1", listen, code, out, errs)
			}
		}
	})

	t.Run("unhealthy status", func(t *testing.T) {
		srv := healthServer(t, http.StatusServiceUnavailable, "draining\n")
		code, out, errs := runHealth(t, "-config", healthConfig(t, srv.Listener.Addr().String()))
		if code != 1 || out != "" || !strings.Contains(errs, `answered 503 Service Unavailable: "draining"`) {
			t.Fatalf("exit %d, stdout %q, stderr %q; want 1 and the status", code, out, errs)
		}
	})

	t.Run("redirect is not followed", func(t *testing.T) {
		srv := httptest.NewTLSServer(http.RedirectHandler("/login", http.StatusFound))
		t.Cleanup(srv.Close)
		code, _, errs := runHealth(t, "-config", healthConfig(t, srv.Listener.Addr().String()))
		if code != 1 || !strings.Contains(errs, "answered 302 Found") {
			t.Fatalf("exit %d, stderr %q; want 1 and the redirect", code, errs)
		}
	})

	t.Run("nothing listening", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		code, _, errs := runHealth(t, "-config", healthConfig(t, addr), "-timeout", "3s")
		if code != 1 || !strings.Contains(errs, "connection refused") || !strings.Contains(errs, "https://"+addr+"/healthz") {
			t.Fatalf("exit %d, stderr %q; want 1 naming the URL and the refusal", code, errs)
		}
	})

	t.Run("plain HTTP listener", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		t.Cleanup(srv.Close)
		code, _, errs := runHealth(t, "-config", healthConfig(t, srv.Listener.Addr().String()))
		if code != 1 || !strings.Contains(errs, "HTTP response to HTTPS client") {
			t.Fatalf("exit %d, stderr %q; want 1 and the TLS mismatch", code, errs)
		}
	})

	t.Run("no admin listener", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "gatehouse.yaml")
		if err := os.WriteFile(path, []byte("log: {level: info}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		code, _, errs := runHealth(t, "-config", path)
		if code != 1 || !strings.Contains(errs, "admin.listen is not set") {
			t.Fatalf("exit %d, stderr %q; want 1 and admin.listen named", code, errs)
		}
	})

	t.Run("configuration does not load", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "gatehouse.yaml")
		if err := os.WriteFile(path, []byte("admin: {listen: nowhere}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		code, _, errs := runHealth(t, "-config", path)
		if code != 1 || !strings.Contains(errs, "does not load") || !strings.Contains(errs, "gatehouse check") {
			t.Fatalf("exit %d, stderr %q; want 1 pointing at gatehouse check", code, errs)
		}
	})

	t.Run("stray argument", func(t *testing.T) {
		if code, _, _ := runHealth(t, "now"); code != 2 {
			t.Fatalf("exit %d, want 2 (usage)", code)
		}
	})
}

func TestProbeAddr(t *testing.T) {
	for listen, want := range map[string]string{
		":8443":              "127.0.0.1:8443",
		"0.0.0.0:8443":       "127.0.0.1:8443",
		"[::]:8443":          "127.0.0.1:8443",
		"127.0.0.1:8443":     "127.0.0.1:8443",
		"[::1]:8443":         "[::1]:8443",
		"192.168.10.5:8443":  "192.168.10.5:8443",
		"gatehouse.lan:8443": "gatehouse.lan:8443",
	} {
		if got := probeAddr(listen); got != want {
			t.Errorf("probeAddr(%q) = %q, want %q", listen, got, want)
		}
	}
}
