// Package slapdtest runs a throwaway OpenLDAP slapd on 127.0.0.1 for tests:
// the real directory server that LDAP through gatehouse is tested against.
//
// Start writes a slapd.conf with one mdb database into the test's temporary
// directory, loads users with slapadd, and runs slapd in the foreground
// with plain LDAP and LDAPS listeners and StartTLS, using a certificate
// from a CA made for the test (internal/testpki). The test owns the process: it is stopped
// and waited for when the test ends, and its log is shown if the test
// failed. Tests skip when slapd is not installed (Debian packages slapd and
// ldap-utils), and fail instead when the environment says CI=true.
package slapdtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
)

// A User is an inetOrgPerson uid=UID under the suffix, with a cleartext
// userPassword that simple binds check.
type User struct {
	UID      string
	Password string
}

// Config describes the directory to serve.
type Config struct {
	// Suffix is the database's base DN, "dc=example,dc=com" say.
	Suffix string
	// Users are created under Suffix before slapd starts.
	Users []User
	// NoTLS leaves TLS unconfigured: no LDAPS listener, and StartTLS is
	// refused, as by a server without a certificate.
	NoTLS bool
}

// Server is a running slapd.
type Server struct {
	Suffix string
	// Addr is the plain LDAP listener, LDAPSAddr the LDAPS one ("" with
	// NoTLS); both are 127.0.0.1:port.
	Addr, LDAPSAddr string
	// CA issued the server's certificate: trust it to reach slapd over TLS.
	CA *testpki.CA

	log *testpeer.Log
}

// Log returns what slapd logged so far: one line per connection and
// operation ("-d stats"), so tests can tell what reached the directory.
func (s *Server) Log() string { return s.log.String() }

// DN returns the bind DN of user uid.
func (s *Server) DN(uid string) string { return "uid=" + uid + "," + s.Suffix }

// URL returns the ldap:// URL of the plain listener.
func (s *Server) URL() string { return "ldap://" + s.Addr }

// LDAPSURL returns the ldaps:// URL of the TLS listener.
func (s *Server) LDAPSURL() string { return "ldaps://" + s.LDAPSAddr }

// Lookup finds a program the tests need (slapd and slapadd live in
// /usr/sbin): see testpeer.Program.
func Lookup(t testing.TB, program, pkg string) string {
	t.Helper()
	return testpeer.Program(t, program, pkg)
}

// Start runs slapd for cfg until t ends.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	slapd := Lookup(t, "slapd", "slapd")
	schema := firstDir(t, "/etc/ldap/schema", "/etc/openldap/schema")
	dir := t.TempDir()
	s := &Server{Suffix: cfg.Suffix}
	var cert *testpki.Issued
	if !cfg.NoTLS {
		s.CA = testpki.NewCA(t, "slapdtest")
		cert = s.CA.Server("localhost", "127.0.0.1")
	}
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "slapd.conf")
	write(t, conf, []byte(slapdConf(dir, schema, cfg, cert)))
	ldif := filepath.Join(dir, "init.ldif")
	write(t, ldif, []byte(initLDIF(cfg)))
	// slapadd is slapd under another name; running it as slapd -T add needs no second binary.
	if out, err := exec.Command(slapd, "-T", "add", "-f", conf, "-l", ldif).CombinedOutput(); err != nil {
		t.Fatalf("slapadd: %v\n%s", err, out)
	}

	// A port picked by the kernel is free again once closed; another
	// process may grab it before slapd does, hence the retries.
	var lastErr error
	for range 3 {
		s.Addr, s.LDAPSAddr = freeAddr(t), ""
		urls := "ldap://" + s.Addr + "/"
		if !cfg.NoTLS {
			s.LDAPSAddr = freeAddr(t)
			urls += " ldaps://" + s.LDAPSAddr + "/"
		}
		s.log = &testpeer.Log{}
		if lastErr = run(t, slapd, conf, urls, s.Addr, s.log); lastErr == nil {
			return s
		}
	}
	t.Fatalf("slapd did not start: %v", lastErr)
	return nil
}

// run starts slapd in the foreground and waits until addr accepts
// connections. On success the process belongs to t: Cleanup kills it and
// waits for it, and shows log if t failed.
func run(t testing.TB, slapd, conf, urls, addr string, log *testpeer.Log) error {
	// -d stats keeps slapd in the foreground and logs each operation.
	cmd := exec.Command(slapd, "-d", "stats", "-f", conf, "-h", urls)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		cmd.Process.Kill()
		<-exited
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			break
		}
		select {
		case err := <-exited:
			return fmt.Errorf("slapd exited: %v\n%s", err, log.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return fmt.Errorf("slapd not listening on %s after 10s\n%s", addr, log.String())
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("slapd log:\n%s", log.String())
		}
	})
	return nil
}

// slapdConf is the configuration for cfg, serving TLS with cert unless it
// is nil.
func slapdConf(dir, schema string, cfg Config, cert *testpki.Issued) string {
	var b strings.Builder
	for _, s := range []string{"core", "cosine", "inetorgperson"} {
		fmt.Fprintf(&b, "include %s\n", filepath.Join(schema, s+".schema"))
	}
	// Debian builds the database backends as modules; other builds link them in.
	for _, d := range []string{"/usr/lib/ldap", "/usr/lib/openldap", "/usr/lib64/openldap", "/usr/libexec/openldap"} {
		if _, err := os.Stat(filepath.Join(d, "back_mdb.la")); err == nil {
			fmt.Fprintf(&b, "modulepath %s\nmoduleload back_mdb\n", d)
			break
		}
	}
	fmt.Fprintf(&b, "pidfile %s\nargsfile %s\n", filepath.Join(dir, "slapd.pid"), filepath.Join(dir, "slapd.args"))
	if cert != nil {
		fmt.Fprintf(&b, "TLSCertificateFile %s\nTLSCertificateKeyFile %s\n", cert.CertFile, cert.KeyFile)
	}
	fmt.Fprintf(&b, "database mdb\nmaxsize 10485760\nsuffix %q\ndirectory %s\n", cfg.Suffix, filepath.Join(dir, "db"))
	// Users may bind and read; passwords are only ever compared.
	b.WriteString("access to attrs=userPassword by anonymous auth by * none\n")
	b.WriteString("access to * by users read by * none\n")
	return b.String()
}

func initLDIF(cfg Config) string {
	rdn, _, _ := strings.Cut(cfg.Suffix, ",")
	attr, value, _ := strings.Cut(rdn, "=")
	var b strings.Builder
	fmt.Fprintf(&b, "dn: %s\nobjectClass: dcObject\nobjectClass: organization\no: %s\n%s: %s\n\n",
		cfg.Suffix, value, attr, value)
	for _, u := range cfg.Users {
		fmt.Fprintf(&b, "dn: uid=%s,%s\nobjectClass: inetOrgPerson\nuid: %s\ncn: %s\nsn: %s\nuserPassword: %s\n\n",
			u.UID, cfg.Suffix, u.UID, u.UID, u.UID, u.Password)
	}
	return b.String()
}

func firstDir(t testing.TB, dirs ...string) string {
	t.Helper()
	for _, d := range dirs {
		if _, err := os.Stat(d); err == nil {
			return d
		}
	}
	t.Fatalf("no OpenLDAP schema directory among %v", dirs)
	return ""
}

func freeAddr(t testing.TB) string {
	return fmt.Sprintf("127.0.0.1:%d", testpeer.FreePort(t))
}

func write(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
