package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
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
	"github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
)

// ppSeen is what a target read before the client's bytes.
type ppSeen struct {
	header *proxyproto.Header // nil: the connection did not start with one
	first  string             // the first line after it
}

// ppTarget reads a PROXY header when the connection starts with the v2
// signature, then echoes one line.
func ppTarget(t *testing.T, seen chan<- ppSeen) *target {
	return newTarget(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		var s ppSeen
		if b, _ := br.Peek(1); len(b) == 1 && b[0] == proxyproto.SIGV2[0] { // "hello" is shorter than a signature
			if sig, _ := br.Peek(12); !bytes.Equal(sig, proxyproto.SIGV2) {
				t.Errorf("target: %q is not the v2 signature", sig)
				return
			}
			h, err := proxyproto.Read(br)
			if err != nil {
				t.Errorf("target: bad PROXY header: %v", err)
				return
			}
			s.header = h
		}
		s.first, _ = br.ReadString('\n')
		seen <- s
		fmt.Fprintf(c, "echo: %s", s.first)
	})
}

func tlvsOf(t *testing.T, h *proxyproto.Header) map[proxyproto.PP2Type][]byte {
	t.Helper()
	tlvs, err := h.TLVs()
	if err != nil {
		t.Fatal(err)
	}
	m := map[proxyproto.PP2Type][]byte{}
	for _, v := range tlvs {
		m[v.Type] = v.Value
	}
	return m
}

// proxy_protocol: v2 puts the client's address and port, the SNI and the
// TLS facts in a header before the first byte the client sent; without the
// key the target sees the client's bytes first.
func TestProxyProtocolHeaderToTarget(t *testing.T) {
	ca := testpki.NewCA(t, "server")
	phones := testpki.NewCA(t, "phones")
	srvCert := ca.Server("pbx.example.com")
	seen := make(chan ppSeen, 1)
	tg := ppTarget(t, seen)
	tlsYAML := fmt.Sprintf("  certificates: [{cert: %s, key: %s}]\n  client_cas: [%s]", srvCert.CertFile, srvCert.KeyFile, phones.File)
	svc := fmt.Sprintf("ports: {sip: %d, sips: 1}, check_certificate: true", tg.port())
	pp := startTLSRig(t, []string{"sip", "sips"}, tlsYAML, svc+", proxy_protocol: v2")
	off := startTLSRig(t, []string{"sip"}, tlsYAML, svc)

	send := func(c net.Conn) ppSeen {
		t.Helper()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprint(c, "hello\n")
		if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "echo: hello\n" {
			t.Fatalf("echo: %q, %v", line, err)
		}
		return <-seen
	}
	tlsFrom := func(src, addr string, cert *testpki.Issued) *tls.Conn {
		conf := &tls.Config{InsecureSkipVerify: true, ServerName: "pbx.example.com"}
		if cert != nil {
			conf.Certificates = []tls.Certificate{cert.TLS}
		}
		c := tls.Client(dialFrom(t, src, addr), conf)
		if err := c.Handshake(); err != nil {
			t.Fatal(err)
		}
		return c
	}

	t.Run("plain", func(t *testing.T) {
		c := dialFrom(t, "127.0.0.2", pp.addr("sip"))
		s := send(c)
		<-pp.infos
		if s.header == nil || s.first != "hello\n" {
			t.Fatalf("target saw header %v, then %q", s.header, s.first)
		}
		src, dst, ok := s.header.TCPAddrs()
		if !ok || src.String() != c.LocalAddr().String() || dst.String() != pp.addr("sip") {
			t.Fatalf("addresses %v -> %v, want %v -> %v", src, dst, c.LocalAddr(), pp.addr("sip"))
		}
		if s.header.Command != proxyproto.PROXY || s.header.TransportProtocol != proxyproto.TCPv4 {
			t.Errorf("command %v, transport %v", s.header.Command, s.header.TransportProtocol)
		}
		if tlvs := tlvsOf(t, s.header); len(tlvs) != 0 {
			t.Errorf("TLVs on a plain connection without a name: %v", tlvs)
		}
	})

	for _, tc := range []struct {
		name   string
		cert   *testpki.Issued
		wantCN string
	}{{"TLS with a verified client certificate", phones.Client("alice"), "alice"}, {"TLS without a certificate", nil, ""}} {
		t.Run(tc.name, func(t *testing.T) {
			c := tlsFrom("127.0.0.3", pp.addr("sips"), tc.cert)
			cs := c.ConnectionState()
			s := send(c)
			<-pp.infos
			if s.header == nil {
				t.Fatal("no PROXY header")
			}
			if src, _, _ := s.header.TCPAddrs(); src.String() != c.LocalAddr().String() {
				t.Errorf("source %v, want %v", src, c.LocalAddr())
			}
			tlvs := tlvsOf(t, s.header)
			if got := string(tlvs[proxyproto.PP2_TYPE_AUTHORITY]); got != "pbx.example.com" {
				t.Errorf("authority %q", got)
			}
			raw, _ := s.header.TLVs()
			ssl, found := tlvparse.FindSSL(raw)
			if !found || !ssl.ClientSSL() {
				t.Fatalf("SSL TLV: %+v, %v", ssl, found)
			}
			if v, _ := ssl.SSLVersion(); v != "TLSv1.3" {
				t.Errorf("SSL version %q", v)
			}
			if ci, _ := ssl.SSLCipher(); ci != tls.CipherSuiteName(cs.CipherSuite) {
				t.Errorf("SSL cipher %q, want %q", ci, tls.CipherSuiteName(cs.CipherSuite))
			}
			cn, hasCN := ssl.ClientCN()
			if ssl.Verified() != (tc.wantCN != "") || cn != tc.wantCN || hasCN != (tc.wantCN != "") || ssl.ClientCertConn() != (tc.cert != nil) {
				t.Errorf("verified %v, CN %q (%v), cert on conn %v; want CN %q", ssl.Verified(), cn, hasCN, ssl.ClientCertConn(), tc.wantCN)
			}
		})
	}

	t.Run("off", func(t *testing.T) {
		s := send(dialFrom(t, "127.0.0.2", off.addr("sip")))
		<-off.infos
		if s.header != nil || s.first != "hello\n" {
			t.Fatalf("without proxy_protocol the target saw header %v, then %q", s.header, s.first)
		}
	})
}

// HAProxy with accept-proxy in front of the target reads gatehouse's
// header: its log names the real client (address and port) and the SNI as
// the PROXY authority, and the connection carries the client's bytes.
func TestProxyProtocolHAProxyTarget(t *testing.T) {
	haproxy := testpeer.Program(t, "haproxy", "haproxy")
	ca := testpki.NewCA(t, "server")
	srvCert := ca.Server("pbx.example.com")
	backend := newTarget(t, echoOrHTTP)
	dir := t.TempDir()
	port := testpeer.FreePort(t)
	conf := fmt.Sprintf(`global
	log stdout format raw local0
defaults
	mode tcp
	log global
	timeout connect 5s
	timeout client 30s
	timeout server 30s
frontend pp
	bind 127.0.0.1:%d accept-proxy
	log-format "PP client=%%ci:%%cp authority=%%[fc_pp_authority]"
	default_backend echo
backend echo
	server echo 127.0.0.1:%d
`, port, backend.port())
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	log := &testpeer.Log{}
	cmd := exec.Command(haproxy, "-db", "-f", path)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	testpeer.WaitListening(t, fmt.Sprintf("127.0.0.1:%d", port))

	r := startTLSRig(t, []string{"sip", "sips"}, fmt.Sprintf("  certificates: [{cert: %s, key: %s}]", srvCert.CertFile, srvCert.KeyFile),
		fmt.Sprintf("ports: {sip: %d}, proxy_protocol: v2", port))
	for _, tc := range []struct {
		typ, src, authority string
	}{{"sip", "127.0.0.2", "-"}, {"sips", "127.0.0.3", "pbx.example.com"}} {
		var c net.Conn = dialFrom(t, tc.src, r.addr(tc.typ))
		local := c.LocalAddr().String()
		if tc.typ == "sips" {
			c = tls.Client(c, &tls.Config{InsecureSkipVerify: true, ServerName: "pbx.example.com"})
		}
		fmt.Fprint(c, "hello\n")
		if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "echo: hello\n" {
			t.Fatalf("%s through HAProxy: %q, %v\n%s", tc.typ, line, err, log.String())
		}
		<-r.infos
		want := fmt.Sprintf("PP client=%s authority=%s", local, tc.authority)
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(log.String(), want) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if !strings.Contains(log.String(), want) {
			t.Fatalf("HAProxy did not log %q:\n%s", want, log.String())
		}
	}
}
