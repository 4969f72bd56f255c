package main

import (
	"log/slog"
	"net"
	"strconv"

	"github.com/gatehouse-pbx/gatehouse/cluster"
	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/proxy/acme"
)

// startACME starts obtaining tls.acme's certificates, answering the
// challenges on the http listener (HTTP-01) and the https or any listener
// (TLS-ALPN-01); nil when tls.acme is not set. In a cluster (node not nil)
// the certificates live in the cluster's buckets: one node obtains and
// renews each, the others load it.
func startACME(cfg *configs.Config, node *cluster.Node, log *slog.Logger) (*acme.Manager, error) {
	a := cfg.TLS.ACME
	if a == nil {
		return nil, nil
	}
	opts := acme.Options{Logger: log}
	if node != nil {
		opts.Storage = node.CertStorage()
	}
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
	log.Info("acme: managing certificates", "names", a.Names, "ca", a.CA, "http_port", opts.HTTPPort, "tls_port", opts.TLSPort,
		"storage", storageName(node, a))
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

// storageName says where the certificates are kept, for the log.
func storageName(node *cluster.Node, a *configs.ACME) string {
	if node != nil {
		return "cluster bucket " + cluster.BucketCerts
	}
	return a.StateDir
}
