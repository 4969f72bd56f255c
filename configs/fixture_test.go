package configs_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// fixture holds real files for a configuration to name, made by the test.
type fixture struct {
	dir      string
	cert     string // a self-signed ECDSA certificate for example.com, usable as a CA too
	key      string // its key
	otherKey string // a key that does not match cert
	notPEM   string // a file holding no PEM block
	hash     string // a bcrypt hash of "secret"
}

var testHash = sync.OnceValue(func() string {
	h, err := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	return string(h)
})

func newFixture(t testing.TB) fixture {
	t.Helper()
	dir := t.TempDir()
	fx := fixture{
		dir:      dir,
		cert:     filepath.Join(dir, "example.com.crt"),
		key:      filepath.Join(dir, "example.com.key"),
		otherKey: filepath.Join(dir, "other.key"),
		notPEM:   filepath.Join(dir, "garbage.crt"),
		hash:     testHash(),
	}
	writeCert(t, fx.cert, fx.key, "example.com")
	writeCert(t, filepath.Join(dir, "other.crt"), fx.otherKey, "other.example.com")
	if err := os.WriteFile(fx.notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return fx
}

// expand replaces {cert}, {key}, {otherkey}, {notpem}, {dir} and {hash} in a
// test configuration.
func (fx fixture) expand(s string) string {
	return strings.NewReplacer(
		"{cert}", fx.cert, "{key}", fx.key, "{otherkey}", fx.otherKey,
		"{notpem}", fx.notPEM, "{dir}", fx.dir, "{hash}", fx.hash,
	).Replace(s)
}

func writeCert(t testing.TB, certFile, keyFile, cn string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		DNSNames:              []string{cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, b []byte) {
		if err := os.WriteFile(name, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(certFile, "CERTIFICATE", der)
	write(keyFile, "PRIVATE KEY", pkcs8)
}
