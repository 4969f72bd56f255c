package proxy_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
	"github.com/gatehouse-pbx/gatehouse/proxy"
	"github.com/gatehouse-pbx/gatehouse/proxy/proxytest"
)

// cnSniffer routes everything to one service and records what the
// listener told it about the client.
type cnSniffer struct{ infos chan proxy.ConnInfo }

func (s cnSniffer) Sniff(first []byte, info *proxy.ConnInfo) (*proxy.Decision, error) {
	s.infos <- *info
	return &proxy.Decision{Service: "pbx.example.com"}, nil
}

func TestTLSTerminationSNIAndClientCertificates(t *testing.T) {
	serverCA := testpki.NewCA(t, "server")
	phones := testpki.NewCA(t, "phones")
	rogue := testpki.NewCA(t, "rogue")
	first := serverCA.Server("default.example.com")
	second := serverCA.Server("pbx.example.com")
	tg := newTarget(t, echoLines)
	port := freePort(t)
	yaml := fmt.Sprintf(`listen: {sips: "127.0.0.1:%d"}
tls:
  certificates:
    - {cert: %s, key: %s}
    - {cert: %s, key: %s}
  client_cas: [%s]
services:
  - {name: pbx.example.com, target: 127.0.0.1, ports: {sip: %d, sips: %d}, check_certificate: true}
`, port, first.CertFile, first.KeyFile, second.CertFile, second.KeyFile, phones.File, tg.port(), tg.port())
	sn := cnSniffer{infos: make(chan proxy.ConnInfo, 1)}
	g := &proxytest.Guard{}
	addr := proxytest.NewServer(t, yaml, map[string]proxy.Handler{"sips": proxy.Stream(sn)}, g).Addr("sips")

	for _, tc := range []struct {
		name, sni, wantCert string
		client              *testpki.Issued
		wantCN              string
	}{
		{"SNI picks the matching certificate", "pbx.example.com", "pbx.example.com", nil, ""},
		{"no SNI gets the first", "", "default.example.com", nil, ""},
		{"unknown SNI gets the first", "nope.example.com", "default.example.com", nil, ""},
		{"trusted client certificate", "pbx.example.com", "pbx.example.com", phones.Client("alice"), "alice"},
		{"untrusted client certificate is not fatal", "pbx.example.com", "pbx.example.com", rogue.Client("alice"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conf := &tls.Config{ServerName: tc.sni, InsecureSkipVerify: true}
			if tc.client != nil {
				conf.Certificates = []tls.Certificate{tc.client.TLS}
			}
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, conf)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if got := c.ConnectionState().PeerCertificates[0].Subject.CommonName; got != tc.wantCert {
				t.Fatalf("server certificate %q, want %q", got, tc.wantCert)
			}
			fmt.Fprint(c, "hello\n")
			info := <-sn.infos
			if info.TLS == nil || info.VerifiedCN != tc.wantCN {
				t.Fatalf("sniffer saw TLS=%v VerifiedCN=%q, want %q", info.TLS != nil, info.VerifiedCN, tc.wantCN)
			}
		})
	}

	// TLS junk is refused and reported before any sniffing.
	c := proxytest.DialFrom(t, "127.0.0.2", addr)
	c.Write([]byte("REGISTER sip:pbx.example.com SIP/2.0\r\n\r\n"))
	io.ReadAll(c)
	g.WaitReason(t, string(proxy.ReasonTLS))
}
