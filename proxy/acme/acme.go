// Package acme obtains and renews the certificates of tls.acme from an RFC
// 8555 CA with github.com/caddyserver/certmagic. gatehouse's own listeners
// answer the challenges: TLS-ALPN-01 on the https and any listeners (the
// proxy's TLS configuration hands a ClientHello offering only acme-tls/1
// to GetCertificate) and HTTP-01 on the http listener, before any routing
// (HandleHTTPChallenge). certmagic's own challenge servers never start: it
// is told gatehouse's addresses, finds them taken and answering, and
// relies on them. Account, keys and certificates live in state_dir, or in
// the cluster's buckets (Options.Storage).
package acme

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/gatehouse-pbx/gatehouse/configs"
	"go.uber.org/zap"
)

// Options are what the configuration's tls.acme section does not say.
type Options struct {
	// ListenHost, HTTPPort and TLSPort are where the CA reaches gatehouse's
	// http and https (or any) listeners. A zero port disables that
	// challenge type.
	ListenHost        string
	HTTPPort, TLSPort int
	// Logger hears obtained, renewed and failed certificates; nil is slog.Default().
	Logger *slog.Logger
	// RenewalWindowRatio is the part of a certificate's lifetime left when
	// it is renewed; 0 is certmagic's (a third).
	RenewalWindowRatio float64
	// RenewCheckInterval is how often expiries are checked; 0 is
	// certmagic's (10 minutes).
	RenewCheckInterval time.Duration
	// Storage keeps account, keys, certificates and challenges, and locks
	// them so that of several nodes sharing it one obtains and renews a
	// certificate (cluster.CertStore); nil is the files of state_dir.
	Storage certmagic.Storage
}

// Manager holds the ACME certificates.
type Manager struct {
	cfg    *certmagic.Config
	issuer *certmagic.ACMEIssuer
	cache  *certmagic.Cache
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc

	mu    sync.Mutex // guards names
	names map[string]bool
}

// New prepares a Manager for a; Manage starts obtaining.
func New(a *configs.ACME, opts Options) (*Manager, error) {
	if opts.HTTPPort == 0 && opts.TLSPort == 0 {
		return nil, errors.New("acme: neither an http nor an https/any listener to answer challenges on")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	m := &Manager{log: opts.Logger, names: map[string]bool{}}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	zl := zap.New(slogCore{log: opts.Logger.With("component", "acme"), level: zap.WarnLevel})
	var cfg *certmagic.Config
	storage := opts.Storage
	if storage == nil {
		storage = &certmagic.FileStorage{Path: a.StateDir}
	}
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return cfg, nil },
		RenewCheckInterval: opts.RenewCheckInterval,
		Logger:             zl,
	})
	cfg = certmagic.New(m.cache, certmagic.Config{
		Storage:            storage,
		RenewalWindowRatio: opts.RenewalWindowRatio,
		Logger:             zl,
		// No OCSP requests: the appliance reaches only what it proxies to.
		OCSP:    certmagic.OCSPConfig{DisableStapling: true},
		OnEvent: m.event,
	})
	m.issuer = certmagic.NewACMEIssuer(cfg, certmagic.ACMEIssuer{
		CA:                      a.CA,
		Email:                   a.Email,
		Agreed:                  true,
		TrustedRoots:            a.CARootPool,
		ListenHost:              opts.ListenHost,
		AltHTTPPort:             opts.HTTPPort,
		AltTLSALPNPort:          opts.TLSPort,
		DisableHTTPChallenge:    opts.HTTPPort == 0,
		DisableTLSALPNChallenge: opts.TLSPort == 0,
		Logger:                  zl,
	})
	cfg.Issuers = []certmagic.Issuer{m.issuer}
	m.cfg = cfg
	return m, nil
}

// event logs what happened to a certificate.
func (m *Manager) event(_ context.Context, event string, data map[string]any) error {
	name := fmt.Sprint(data["identifier"])
	switch event {
	case "cert_obtained":
		m.log.Info("acme: certificate obtained", "name", name, "renewal", data["renewal"], "issuer", data["issuer"])
	case "cert_failed":
		m.log.Error("acme: certificate not obtained", "name", name, "renewal", data["renewal"], "err", data["error"])
	}
	return nil
}

// Manage obtains certificates for names (in the background, retrying with
// backoff) and keeps them renewed; names already managed are left as they
// are. Certificates already in state_dir are loaded first.
func (m *Manager) Manage(names []string) error {
	m.setNames(names)
	return m.cfg.ManageAsync(m.ctx, names)
}

// ManageSync is Manage, but waits for each certificate and returns the
// first failure (no retries): for tests and for `gatehouse check`-like tools.
func (m *Manager) ManageSync(ctx context.Context, names []string) error {
	m.setNames(names)
	return m.cfg.ManageSync(ctx, names)
}

func (m *Manager) setNames(names []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range names {
		m.names[configs.FoldName(n)] = true
	}
}

// Manages reports whether name is one of the names certificates are
// obtained for.
func (m *Manager) Manages(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.names[configs.FoldName(strings.TrimSuffix(name, "."))]
}

// GetCertificate answers a TLS-ALPN-01 challenge, or returns the
// certificate of a managed name.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return m.cfg.GetCertificate(hello)
}

// HandleHTTPChallenge answers an HTTP-01 challenge request and reports
// whether r was one.
func (m *Manager) HandleHTTPChallenge(w http.ResponseWriter, r *http.Request) bool {
	return m.issuer.HandleHTTPChallenge(w, r)
}

// Certificate describes one certificate for the admin UI.
type Certificate struct {
	Names    []string
	Issuer   string
	NotAfter time.Time
}

// Certificates lists the certificates held for the managed names.
func (m *Manager) Certificates() []Certificate {
	m.mu.Lock()
	names := make([]string, 0, len(m.names))
	for n := range m.names {
		names = append(names, n)
	}
	m.mu.Unlock()
	slices.Sort(names)
	var out []Certificate
	seen := map[string]bool{}
	for _, n := range names {
		for _, c := range m.cache.AllMatchingCertificates(n) {
			if c.Leaf == nil || seen[c.Hash()] {
				continue
			}
			seen[c.Hash()] = true
			out = append(out, Certificate{Names: c.Names, Issuer: issuerName(c.Leaf), NotAfter: c.Leaf.NotAfter})
		}
	}
	return out
}

func issuerName(c *x509.Certificate) string {
	if c.Issuer.CommonName != "" {
		return c.Issuer.CommonName
	}
	return c.Issuer.String()
}

// Close stops renewing.
func (m *Manager) Close() {
	m.cancel()
	m.cache.Stop()
}
