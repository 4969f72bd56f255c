package main

import (
	"log/slog"
	"net"
	"strconv"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/proxy/acme"
)

// startACME starts obtaining tls.acme's certificates, answering the
// challenges on the http listener (HTTP-01) and the https or any listener
// (TLS-ALPN-01); nil when tls.acme is not set.
func startACME(cfg *configs.Config, log *slog.Logger) (*acme.Manager, error) {
	a := cfg.TLS.ACME
	if a == nil {
		return nil, nil
	}
	opts := acme.Options{Logger: log}
	if host, port, ok := hostPort(cfg.Listen["http"]); ok {
		opts.ListenHost, opts.HTTPPort = host, port
	}
	for _, typ := range []string{"https", configs.ListenAny} {
		if host, port, ok := hostPort(cfg.Listen[typ]); ok && opts.TLSPort == 0 {
			opts.TLSPort = port
			if opts.ListenHost == "" {
				opts.ListenHost = host
			}
		}
	}
	m, err := acme.New(a, opts)
	if err != nil {
		return nil, err
	}
	if err := m.Manage(a.Names); err != nil {
		m.Close()
		return nil, err
	}
	log.Info("acme: managing certificates", "names", a.Names, "ca", a.CA, "http_port", opts.HTTPPort, "tls_port", opts.TLSPort)
	return m, nil
}

func hostPort(addr string) (string, int, bool) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, false
	}
	port, err := strconv.Atoi(p)
	return host, port, err == nil
}

// acmeCertificates is what the admin UI lists of tls.acme; nil without it.
func (a *app) acmeCertificates() func() []acme.Certificate {
	if a.acme == nil {
		return nil
	}
	return a.acme.Certificates
}
