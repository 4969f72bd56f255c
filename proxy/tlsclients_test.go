package proxy

import (
	"bufio"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
)

// tlsRig is a Server with a stream handler on each TLS type of listen, all
// routing to pbx.example.com, whose target echoes lines and answers an
// HTTP request with 200 (for curl).
type tlsRig struct {
	srv   *Server
	guard *recordingGuard
	infos chan ConnInfo
}

func startTLSRig(t *testing.T, types []string, tlsYAML, serviceYAML string) *tlsRig {
	t.Helper()
	tg := newTarget(t, echoOrHTTP)
	var listen []string
	for _, typ := range types {
		listen = append(listen, fmt.Sprintf("%s: \"127.0.0.1:%d\"", typ, freePort(t)))
	}
	yaml := fmt.Sprintf("listen: {%s}\ntls:\n%s\nservices:\n  - {name: pbx.example.com, target: 127.0.0.1, %s}\n",
		strings.Join(listen, ", "), tlsYAML, strings.ReplaceAll(serviceYAML, "PORT", fmt.Sprint(tg.port())))
	cfg, err := configs.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	r := &tlsRig{guard: &recordingGuard{}, infos: make(chan ConnInfo, 16)}
	handlers := map[string]Handler{}
	for _, typ := range types {
		handlers[typ] = Stream(cnSniffer{infos: r.infos})
	}
	r.srv, err = NewServer(cfg, Options{Handlers: handlers, Guard: r.guard, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.srv.Close() })
	return r
}

func (r *tlsRig) addr(typ string) string { return r.srv.Addr(typ).String() }

// echoOrHTTP echoes one line, or answers an HTTP request head with a 200,
// and closes: the clients (openssl s_client -ign_eof) end when it does.
func echoOrHTTP(c net.Conn) {
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		return
	}
	if strings.HasPrefix(line, "GET ") {
		for line != "\r\n" && err == nil {
			line, err = br.ReadString('\n')
		}
		fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
		return
	}
	fmt.Fprintf(c, "echo: %s", line)
}

// handshake dials addr with Go's client and reports whether the server
// asked for a client certificate; the client never sends one. With echo, a
// line must come back through the target (under TLS 1.3 that is what proves
// the server took the empty Certificate).
func handshake(t *testing.T, addr string, echo bool) (requested bool) {
	t.Helper()
	var asked atomic.Bool
	conf := &tls.Config{InsecureSkipVerify: true, ServerName: "pbx.example.com",
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			asked.Store(true)
			return &tls.Certificate{}, nil // none: the handshake must still succeed
		}}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, conf)
	if err != nil {
		t.Fatalf("handshake with %s: %v", addr, err)
	}
	defer c.Close()
	if !echo {
		return asked.Load()
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(c, "hello\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "echo: hello\n" {
		t.Fatalf("after the handshake: %q, %v", line, err)
	}
	return asked.Load()
}

// A CertificateRequest goes only to the TLS types whose family a service
// checks certificates for, and no certificate is still a handshake.
func TestClientCertificateRequestedOnlyWhereChecked(t *testing.T) {
	ca := testpki.NewCA(t, "server")
	phones := testpki.NewCA(t, "phones")
	srvCert := ca.Server("pbx.example.com")
	tlsYAML := fmt.Sprintf("  certificates: [{cert: %s, key: %s}]\n  client_cas: [%s]", srvCert.CertFile, srvCert.KeyFile, phones.File)
	types := []string{"https", "sips", "h323s", "ldaps"}

	for _, tc := range []struct {
		name    string
		service string
		echo    bool // every type has a plain port at the target
		want    map[string]bool
	}{
		{"check_certificate on sip", "ports: {sip: PORT, sips: PORT, h323: PORT, h323s: PORT, http: PORT, ldap: PORT}, check_certificate: true", true,
			map[string]bool{"https": false, "sips": true, "h323s": true, "ldaps": false}},
		{"only the TLS port: nothing to choose", "ports: {sips: PORT, h323s: PORT, http: PORT, ldap: PORT}, check_certificate: true", false,
			map[string]bool{"https": false, "sips": false, "h323s": false, "ldaps": false}},
		{"no check_certificate", "ports: {sip: PORT, h323: PORT, http: PORT, ldap: PORT}", true,
			map[string]bool{"https": false, "sips": false, "h323s": false, "ldaps": false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startTLSRig(t, types, tlsYAML, tc.service)
			for _, typ := range types {
				if got := handshake(t, r.addr(typ), tc.echo); got != tc.want[typ] {
					t.Errorf("%s: certificate requested %v, want %v", typ, got, tc.want[typ])
				}
				if !tc.echo {
					continue
				}
				if info := <-r.infos; info.VerifiedCN != "" {
					t.Errorf("%s: VerifiedCN %q without a certificate", typ, info.VerifiedCN)
				}
			}
			if rs := r.guard.reasons(); tc.echo && len(rs) != 0 {
				t.Errorf("refusals: %q", rs)
			}
		})
	}
}

// openssl's s_client, without a certificate, on sips where the service
// checks certificates: asked for one, it sends none and the handshake
// goes on; on https it is not asked at all.
func TestOpenSSLWithoutClientCertificate(t *testing.T) {
	openssl := testpeer.Program(t, "openssl", "openssl")
	ca := testpki.NewCA(t, "server")
	phones := testpki.NewCA(t, "phones")
	srvCert := ca.Server("pbx.example.com")
	r := startTLSRig(t, []string{"https", "sips"},
		fmt.Sprintf("  certificates: [{cert: %s, key: %s}]\n  client_cas: [%s]", srvCert.CertFile, srvCert.KeyFile, phones.File),
		"ports: {sip: PORT, sips: PORT, http: PORT}, check_certificate: true")
	for _, tc := range []struct {
		typ       string
		requested bool
	}{{"sips", true}, {"https", false}} {
		out := sClient(t, openssl, r.addr(tc.typ), "-msg")
		if !strings.Contains(out, "echo: hello") {
			t.Fatalf("%s: no echo through the handshake:\n%s", tc.typ, out)
		}
		if got := strings.Contains(out, "CertificateRequest"); got != tc.requested {
			t.Errorf("%s: CertificateRequest seen %v, want %v", tc.typ, got, tc.requested)
		}
		<-r.infos
	}
}

// sClient runs openssl s_client against addr with args, sends a line and
// returns everything it printed.
func sClient(t *testing.T, openssl, addr string, args ...string) string {
	t.Helper()
	cmd := exec.Command(openssl, append([]string{"s_client", "-connect", addr, "-servername", "pbx.example.com", "-ign_eof"}, args...)...)
	cmd.Stdin = strings.NewReader("hello\n")
	var out testpeer.Log
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("openssl s_client %v did not finish:\n%s", args, out.String())
	}
	return out.String()
}

// rsaServer writes a self-signed RSA certificate for pbx.example.com: RSA
// key exchange (the suites of TLS 1.0 phones) needs an RSA key.
func rsaServer(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pbx.example.com"},
		DNSNames: []string{"pbx.example.com"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "rsa.crt"), filepath.Join(dir, "rsa.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600)
	return certFile, keyFile
}

// tls.min_version: old clients (openssl's and curl's TLS 1.0 and 1.1, with
// the RSA key exchange suites of phones that never got TLS 1.2) are served
// when the operator lowers it, and refused by default.
func TestMinVersionWithRealClients(t *testing.T) {
	openssl := testpeer.Program(t, "openssl", "openssl")
	curl := testpeer.Program(t, "curl", "curl")
	certFile, keyFile := rsaServer(t)
	certs := fmt.Sprintf("  certificates: [{cert: %s, key: %s}]", certFile, keyFile)
	legacy := startTLSRig(t, []string{"https"}, certs+"\n  min_version: \"1.0\"", "ports: {http: PORT}")
	modern := startTLSRig(t, []string{"https"}, certs, "ports: {http: PORT}")

	for _, tc := range []struct {
		version, flag string
		cipher        string
	}{
		{"1.0", "-tls1", "DEFAULT@SECLEVEL=0"},
		{"1.1", "-tls1_1", "DEFAULT@SECLEVEL=0"},
		{"1.0 RSA key exchange", "-tls1", "AES128-SHA@SECLEVEL=0"},
		{"1.1 RSA key exchange", "-tls1_1", "AES256-SHA@SECLEVEL=0"},
	} {
		t.Run("openssl "+tc.version, func(t *testing.T) {
			out := sClient(t, openssl, legacy.addr("https"), tc.flag, "-cipher", tc.cipher)
			if !strings.Contains(out, "echo: hello") {
				t.Fatalf("min_version 1.0 refused TLS %s:\n%s", tc.version, out)
			}
			<-legacy.infos
			out = sClient(t, openssl, modern.addr("https"), tc.flag, "-cipher", tc.cipher)
			if strings.Contains(out, "echo: hello") {
				t.Fatalf("default min_version accepted TLS %s:\n%s", tc.version, out)
			}
		})
	}
	modern.guard.waitReason(t, string(ReasonTLS))

	for _, v := range []string{"1.0", "1.1"} {
		t.Run("curl "+v, func(t *testing.T) {
			args := []string{"-sS", "-k", "--tlsv" + v, "--tls-max", v, "--ciphers", "DEFAULT@SECLEVEL=0",
				"--resolve", "pbx.example.com:" + port(legacy.addr("https")) + ":127.0.0.1",
				"https://pbx.example.com:" + port(legacy.addr("https")) + "/"}
			out, err := exec.Command(curl, args...).CombinedOutput()
			if err != nil || string(out) != "ok\n" {
				t.Fatalf("curl TLS %s: %v\n%s", v, err, out)
			}
			<-legacy.infos
		})
	}

	// Go's own client at 1.2 and 1.3 still gets the modern suites.
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		c, err := tls.Dial("tcp", legacy.addr("https"), &tls.Config{InsecureSkipVerify: true, MinVersion: v, MaxVersion: v})
		if err != nil {
			t.Fatal(err)
		}
		cs := c.ConnectionState()
		c.Close()
		if v == tls.VersionTLS12 && !strings.HasPrefix(tls.CipherSuiteName(cs.CipherSuite), "TLS_ECDHE_") {
			t.Errorf("TLS 1.2 client got %s, want an ECDHE suite", tls.CipherSuiteName(cs.CipherSuite))
		}
	}
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// A client that aborts its handshake (here: Go's client that cannot answer
// a CertificateRequest, as Chromium does) and retries at once is one
// suspicious event; bytes that are not TLS count every time.
func TestAbortedHandshakeCountsOnce(t *testing.T) {
	ca := testpki.NewCA(t, "server")
	phones := testpki.NewCA(t, "phones")
	srvCert := ca.Server("pbx.example.com")
	r := startTLSRig(t, []string{"sips"},
		fmt.Sprintf("  certificates: [{cert: %s, key: %s}]\n  client_cas: [%s]", srvCert.CertFile, srvCert.KeyFile, phones.File),
		"ports: {sip: PORT, sips: PORT}, check_certificate: true")
	addr := r.addr("sips")
	abort := func(src string) {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		conf := &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				return nil, errors.New("user cancelled the certificate prompt")
			}}
		if c, err := tls.DialWithDialer(d, "tcp", addr, conf); err == nil {
			c.Close()
			t.Fatal("handshake succeeded although the client gave up")
		}
	}
	aborted := string(ReasonTLS) + " (aborted by client)"
	countOf := func(reason string) int {
		n := 0
		for _, rs := range r.guard.reasons() {
			if rs == ": "+reason {
				n++
			}
		}
		return n
	}
	abort("127.0.0.2")
	r.guard.waitReason(t, aborted)
	abort("127.0.0.2")
	abort("127.0.0.2")
	// A retry that succeeds, then another client's abort, which counts.
	if !handshake(t, addr, true) {
		t.Fatal("no CertificateRequest on sips")
	}
	<-r.infos
	abort("127.0.0.3")
	deadline := time.Now().Add(5 * time.Second)
	for countOf(aborted) < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	// Not TLS at all: refused and counted each time.
	for range 2 {
		c := dialFrom(t, "127.0.0.2", addr)
		c.Write([]byte("REGISTER sip:pbx.example.com SIP/2.0\r\n\r\n"))
		io.ReadAll(c)
	}
	for countOf(string(ReasonTLS)) < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n, m := countOf(aborted), countOf(string(ReasonTLS)); n != 2 || m != 2 {
		t.Fatalf("%d aborts and %d bad handshakes counted, want 2 and 2: %q", n, m, r.guard.reasons())
	}
}

func TestAbortsWindow(t *testing.T) {
	var a aborts
	ip := netip.MustParseAddr("192.0.2.1")
	now := time.Now()
	if !a.first(ip, now) || a.first(ip, now.Add(abortWindow-time.Millisecond)) {
		t.Fatal("a second abort within the window counted")
	}
	if !a.first(ip, now.Add(abortWindow)) {
		t.Fatal("an abort after the window did not count")
	}
	// Full of recent clients: nothing is suppressed for a new one.
	for i := range maxAbortClients {
		a.first(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), now)
	}
	other := netip.MustParseAddr("198.51.100.1")
	for i := range 2 {
		if !a.first(other, now) {
			t.Fatalf("abort %d: a full memory suppressed it", i+1)
		}
	}
}
