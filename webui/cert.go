package webui

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
)

// The self-signed certificate's files in admin.state_dir.
const (
	selfCertFile = "admin-selfsigned.crt"
	selfKeyFile  = "admin-selfsigned.key"
)

// selfSignedValidity is long: the certificate is trusted by its
// fingerprint, not its dates, and an appliance must not lock its
// administrator out on an anniversary.
const selfSignedValidity = 10 * 365 * 24 * time.Hour

// certificates returns what the admin listener offers: admin.cert, else the
// tls certificates, else the self-signed certificate in admin.state_dir,
// made on first use.
func (s *Server) certificates(cfg *configs.Config) ([]tls.Certificate, error) {
	if cfg.Admin.Loaded != nil {
		return []tls.Certificate{*cfg.Admin.Loaded}, nil
	}
	if len(cfg.TLS.Certificates) > 0 {
		certs := make([]tls.Certificate, len(cfg.TLS.Certificates))
		for i, ck := range cfg.TLS.Certificates {
			certs[i] = ck.Loaded
		}
		return certs, nil
	}
	pair, made, err := selfSigned(cfg.Admin.StateDir, cfg.Admin.Listen, s.now())
	if err != nil {
		return nil, fmt.Errorf("webui: self-signed certificate in admin.state_dir %s: %w", cfg.Admin.StateDir, err)
	}
	msg := "admin UI uses its self-signed certificate; check this fingerprint when the browser asks"
	if made {
		msg = "admin UI made a self-signed certificate; check this fingerprint when the browser asks"
	}
	s.log.Warn(msg, "cert", filepath.Join(cfg.Admin.StateDir, selfCertFile), "sha256", Fingerprint(pair.Leaf))
	return []tls.Certificate{pair}, nil
}

// selfSigned loads the certificate kept in dir, or makes and keeps one.
// made says it was made now.
func selfSigned(dir, listen string, now time.Time) (pair tls.Certificate, made bool, err error) {
	if dir == "" {
		return pair, false, errors.New("no directory to keep it in")
	}
	certPath, keyPath := filepath.Join(dir, selfCertFile), filepath.Join(dir, selfKeyFile)
	pair, err = tls.LoadX509KeyPair(certPath, keyPath)
	if err == nil {
		return pair, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return pair, false, err
	}
	certPEM, keyPEM, err := makeSelfSigned(listen, now)
	if err != nil {
		return pair, false, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return pair, false, err
	}
	// The key first: a certificate without its key would be a broken pair.
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return pair, false, err
	}
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return pair, false, err
	}
	pair, err = tls.X509KeyPair(certPEM, keyPEM)
	return pair, true, err
}

// makeSelfSigned makes a P-256 certificate for the names an administrator
// may type: the host name, localhost, the loopback addresses and the
// admin.listen address when it is one.
func makeSelfSigned(listen string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "gatehouse admin", Organization: []string{"gatehouse"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(selfSignedValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if h, err := os.Hostname(); err == nil && h != "" && h != "localhost" {
		tmpl.DNSNames = append(tmpl.DNSNames, h)
	}
	if host, _, err := net.SplitHostPort(listen); err == nil {
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() && !ip.IsLoopback() {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if ip == nil && host != "" && host != "localhost" {
			tmpl.DNSNames = append(tmpl.DNSNames, host)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// Fingerprint is the SHA-256 of a certificate, as browsers show it
// (colon-separated upper-case hex).
func Fingerprint(c *x509.Certificate) string {
	if c == nil {
		return ""
	}
	sum := sha256.Sum256(c.Raw)
	var b strings.Builder
	for i, x := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", x)
	}
	return b.String()
}

// writeFileAtomic replaces name with data: written to a temporary file in
// the same directory, synced, then renamed over name, so that a crash
// leaves either the old file or the new one, never half of one.
func writeFileAtomic(name string, data []byte, perm fs.FileMode) error {
	tmp, err := writeTemp(name, data, perm)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, name); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
