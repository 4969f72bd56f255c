// Package testpki makes throwaway certificate authorities and certificates
// for tests: a CA, server certificates for given names, client certificates
// with a given CN and subjectAltNames, written as PEM files into a test's
// temporary directory. It is the one place the tests of every package mint
// certificates (proxytest, slapdtest and the protocols' tests use it).
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// CA is a certificate authority that issues test certificates.
type CA struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
	// File is the CA certificate as a PEM file in the test's temp dir,
	// KeyFile its key: a self-signed certificate with its key, for a
	// configuration that wants one.
	File, KeyFile string
	dir           string
	t             testing.TB
}

// NewCA makes a CA called name.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &CA{Cert: cert, Key: key, CertPEM: pemBlock("CERTIFICATE", der), dir: t.TempDir(), t: t}
	ca.File = ca.write(name+"-ca.crt", ca.CertPEM)
	ca.KeyFile = ca.write(name+"-ca.key", keyPEM(t, key))
	return ca
}

// Pool returns a pool holding the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Issued is a certificate and key issued by a CA, as files and in memory.
type Issued struct {
	CertFile, KeyFile string
	TLS               tls.Certificate
}

// Server issues a server certificate for names (DNS names or IP addresses);
// the first is also the CN.
func (ca *CA) Server(names ...string) *Issued {
	return ca.issue(ca.named(names, x509.ExtKeyUsageServerAuth))
}

// Node issues a certificate for an end of a mutual-TLS link that is server
// and client at once (a cluster route), for the names and IP addresses
// given, as Server reads them.
func (ca *CA) Node(names ...string) *Issued {
	return ca.issue(ca.named(names, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth))
}

// named is the template for names (the first is the Common Name; each is
// a DNS name or an IP address) with the extended key usages given.
func (ca *CA) named(names []string, usage ...x509.ExtKeyUsage) *x509.Certificate {
	tmpl := ca.template(names[0])
	tmpl.ExtKeyUsage = usage
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	return tmpl
}

// Client issues a client certificate with Common Name cn and the
// subjectAltNames sans, read as Template reads them.
func (ca *CA) Client(cn string, sans ...string) *Issued {
	tmpl := ca.template(cn)
	named := Template(cn, sans...)
	tmpl.URIs, tmpl.EmailAddresses = named.URIs, named.EmailAddresses
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	return ca.issue(tmpl)
}

// Template returns an unsigned certificate with Common Name cn and the
// subjectAltNames sans: a name with a colon is a URI ("sip:alice@example.com"),
// any other an e-mail address. Tests of code that reads a verified peer
// certificate hand it over as if parsed from a handshake.
func Template(cn string, sans ...string) *x509.Certificate {
	c := &x509.Certificate{Subject: pkix.Name{CommonName: cn}}
	for _, s := range sans {
		if !strings.Contains(s, ":") {
			c.EmailAddresses = append(c.EmailAddresses, s)
			continue
		}
		u, err := url.Parse(s)
		if err != nil {
			panic("testpki: " + err.Error())
		}
		c.URIs = append(c.URIs, u)
	}
	return c
}

func (ca *CA) template(cn string) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: serial(ca.t),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
}

func (ca *CA) issue(tmpl *x509.Certificate) *Issued {
	t := ca.t
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM := pemBlock("CERTIFICATE", der), keyPEM(t, key)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	name := tmpl.Subject.CommonName
	return &Issued{
		CertFile: ca.write(name+"-"+tmpl.SerialNumber.String()+".crt", certPEM),
		KeyFile:  ca.write(name+"-"+tmpl.SerialNumber.String()+".key", keyPEM),
		TLS:      pair,
	}
}

// keyPEM encodes key as an "EC PRIVATE KEY" (SEC 1) block, the form
// openssl ecparam writes and every TLS stack the tests drive reads.
func keyPEM(t testing.TB, key *ecdsa.PrivateKey) []byte {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("EC PRIVATE KEY", der)
}

func (ca *CA) write(name string, data []byte) string {
	p := filepath.Join(ca.dir, filepath.Base(name))
	if err := os.WriteFile(p, data, 0o600); err != nil {
		ca.t.Fatal(err)
	}
	return p
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}
