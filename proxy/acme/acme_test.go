package acme_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
	"github.com/gatehouse-pbx/gatehouse/proxy"
	"github.com/gatehouse-pbx/gatehouse/proxy/acme"
)

// pebbleCA is Pebble with the CA of its API certificate.
type pebbleCA struct {
	*testpeer.Pebble
	caRoot string
}

func startPebble(t *testing.T) *pebbleCA {
	t.Helper()
	ca := testpki.NewCA(t, "pebble-api")
	api := ca.Server("127.0.0.1")
	return &pebbleCA{Pebble: testpeer.StartPebble(t, api.CertFile, api.KeyFile), caRoot: ca.File}
}

// echo routes every stream to the one service.
type echo struct{}

func (echo) Sniff(first []byte, info *proxy.ConnInfo) (*proxy.Decision, error) {
	return &proxy.Decision{Service: "hq.example.com"}, nil
}

// stateDir is a temporary state_dir removed at cleanup, after the Manager
// is closed (cleanups run last first). certmagic's obtain and renew jobs run
// on goroutines of its own that Close cannot wait for, and one may still be
// storing a certificate then: t.TempDir's single RemoveAll would fail the
// test with "directory not empty", so the removal is retried briefly.
func stateDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "acme-state-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			err := os.RemoveAll(dir)
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("state_dir: %v", err)
				return
			}
		}
	})
	return dir
}

// gatehouse runs the proxy with tls.acme on the given listeners.
func gatehouse(t *testing.T, p *pebbleCA, listen, extraTLS string, opts acme.Options) (*proxy.Server, *acme.Manager, *configs.Config) {
	t.Helper()
	tg, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.Close() })
	state := stateDir(t)
	yaml := fmt.Sprintf(`listen: {%s}
tls:
%s
  acme:
    email: pki@example.com
    ca: %s
    ca_root: %s
    names: [acme.example.com, hq.example.com, bad.example.com]
    state_dir: %s
services:
  - {name: hq.example.com, target: 127.0.0.1, ports: {sip: %d}}
`, listen, extraTLS, p.Directory, p.caRoot, state, tg.Addr().(*net.TCPAddr).Port)
	cfg, err := configs.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	if opts.ListenHost == "" {
		opts.ListenHost = "127.0.0.1"
	}
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := acme.New(cfg.TLS.ACME, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	handlers := map[string]proxy.Handler{}
	for _, typ := range []string{"http", "https", "sips"} {
		handlers[typ] = proxy.Stream(echo{})
	}
	srv, err := proxy.NewServer(cfg, proxy.Options{Handlers: handlers, Certificates: m, Logger: opts.Logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv, m, cfg
}

// served returns the certificate addr serves for sni.
func served(t *testing.T, addr, sni string) (issuer, serial string) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("%s: %v", sni, err)
	}
	defer c.Close()
	leaf := c.ConnectionState().PeerCertificates[0]
	if leaf.VerifyHostname(sni) != nil {
		t.Fatalf("%s: served a certificate for %v", sni, leaf.DNSNames)
	}
	return leaf.Issuer.CommonName, leaf.SerialNumber.String()
}

// TLS-ALPN-01 on the https listener: a certificate is obtained from Pebble
// and served, kept in state_dir, renewed ahead of expiry (here the renewal
// window is the whole lifetime, checked every second); a configured
// certificate for a name wins; a name whose challenge cannot be reached
// fails without disturbing the others.
func TestTLSALPN01(t *testing.T) {
	p := startPebble(t)
	own := testpki.NewCA(t, "own")
	hq := own.Server("hq.example.com")
	srv, m, cfg := gatehouse(t, p, fmt.Sprintf("https: \"127.0.0.1:%d\"", p.TLSPort),
		fmt.Sprintf("  certificates: [{cert: %s, key: %s}]", hq.CertFile, hq.KeyFile), acme.Options{TLSPort: p.TLSPort, RenewalWindowRatio: 1, RenewCheckInterval: time.Second})
	addr := srv.Addr("https").String()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := m.ManageSync(ctx, []string{"acme.example.com", "hq.example.com"}); err != nil {
		t.Fatal(err)
	}
	issuer, serial := served(t, addr, "acme.example.com")
	if !strings.Contains(issuer, "Pebble") {
		t.Fatalf("acme.example.com issued by %q", issuer)
	}
	if issuer, _ := served(t, addr, "hq.example.com"); issuer != "own" {
		t.Errorf("hq.example.com: served the certificate of %q, want the configured one", issuer)
	}
	var stored []string
	filepath.Walk(cfg.TLS.ACME.StateDir, func(path string, info os.FileInfo, err error) error {
		if err == nil && strings.HasSuffix(path, "acme.example.com.crt") {
			stored = append(stored, path)
		}
		return nil
	})
	if len(stored) != 1 {
		t.Errorf("state_dir holds %q", stored)
	}

	renewed := serial
	for deadline := time.Now().Add(30 * time.Second); renewed == serial && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		_, renewed = served(t, addr, "acme.example.com")
	}
	if renewed == serial {
		t.Error("no renewal served within 30s")
	}
	var list []string
	for _, c := range m.Certificates() {
		list = append(list, fmt.Sprintf("%v %s %v", c.Names, c.Issuer, c.NotAfter.After(time.Now())))
	}
	if len(list) != 2 { // acme.example.com and hq.example.com (obtained, though the configured one is served)
		t.Errorf("certificates: %q", list)
	}

	// A failed challenge: Pebble reaches 127.0.0.2, where nothing listens.
	p.ResolveTo(t, "bad.example.com", "127.0.0.2")
	if err := m.ManageSync(ctx, []string{"bad.example.com"}); err == nil {
		t.Fatal("bad.example.com: obtained without a reachable challenge")
	}
	if issuer, _ := served(t, addr, "acme.example.com"); !strings.Contains(issuer, "Pebble") {
		t.Errorf("after the failure acme.example.com is served by %q", issuer)
	}
}

// HTTP-01 on the http listener, answered before routing: gatehouse has no
// https listener here, so Pebble can only validate over HTTP; the
// certificate then serves sips.
func TestHTTP01(t *testing.T) {
	p := startPebble(t)
	sips := testpeer.FreePort(t)
	srv, m, _ := gatehouse(t, p, fmt.Sprintf("http: \"127.0.0.1:%d\", sips: \"127.0.0.1:%d\"", p.HTTPPort, sips), "",
		acme.Options{HTTPPort: p.HTTPPort})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := m.ManageSync(ctx, []string{"acme.example.com"}); err != nil {
		t.Fatal(err)
	}
	if issuer, _ := served(t, srv.Addr("sips").String(), "acme.example.com"); !strings.Contains(issuer, "Pebble") {
		t.Fatalf("issued by %q", issuer)
	}
}

// TLS-ALPN-01 on listen.any: the validation's ClientHello is told from the
// other protocols by its ALPN.
func TestTLSALPN01OnAny(t *testing.T) {
	p := startPebble(t)
	srv, m, _ := gatehouse(t, p, fmt.Sprintf("any: \"127.0.0.1:%d\"", p.TLSPort), "", acme.Options{TLSPort: p.TLSPort})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := m.ManageSync(ctx, []string{"acme.example.com"}); err != nil {
		t.Fatal(err)
	}
	if issuer, _ := served(t, srv.Addr(configs.ListenAny).String(), "acme.example.com"); !strings.Contains(issuer, "Pebble") {
		t.Fatalf("issued by %q", issuer)
	}
}
