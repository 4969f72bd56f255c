package configs_test

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
)

// fixture holds real files for a configuration to name, made by the test.
type fixture struct {
	dir      string
	cert     string // a self-signed CA certificate, also the certificate of example.com
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
	ca := testpki.NewCA(t, "example.com")
	move(t, ca.File, fx.cert)
	move(t, ca.KeyFile, fx.key)
	move(t, ca.Server("other.example.com").KeyFile, fx.otherKey)
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

// move puts a file testpki wrote where the fixture names it.
func move(t testing.TB, from, to string) {
	t.Helper()
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}
