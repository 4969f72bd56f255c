package ldap

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	goldap "github.com/go-ldap/ldap/v3"

	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
	"github.com/gatehouse-pbx/gatehouse/proxy"
	"github.com/gatehouse-pbx/gatehouse/proxy/proxytest"
)

// The tests run this package's Sniffer behind the real listener and relay
// (proxy.Server, through proxytest), with real clients and a real slapd.

// sniffed is what the Sniffer decided for one connection.
type sniffed struct {
	d     *proxy.Decision
	err   error  // Sniff's refusal
	first []byte // the bytes it decided on, which the proxy replays to the target
	tls   bool   // the connection was upgraded with StartTLS before
}

// spy is the Sniffer as the proxy sees it (RefusalReply and StartTLS are
// its own); it only tells the test what each connection's Sniff decided.
type spy struct {
	*Sniffer
	decided chan sniffed

	mu       sync.Mutex
	upgraded map[*proxy.ConnInfo]bool // connections after StartTLS
}

func (s *spy) Sniff(first []byte, info *proxy.ConnInfo) (*proxy.Decision, error) {
	d, err := s.Sniffer.Sniff(first, info)
	if errors.Is(err, proxy.ErrNeedMore) {
		return d, err
	}
	s.mu.Lock()
	upgraded := s.upgraded[info]
	if err == nil && d.UpgradeTLS {
		s.upgraded[info] = true
		s.mu.Unlock()
		return d, err
	}
	delete(s.upgraded, info)
	s.mu.Unlock()
	s.decided <- sniffed{d: d, err: err, first: bytes.Clone(first), tls: upgraded}
	return d, err
}

// gatehouse is a proxy.Server with the Sniffer on an ldap and an ldaps
// listener, in front of targets by service.
type gatehouse struct {
	*proxytest.Server
	spy *spy
	ca  *testpki.CA // issued the listeners' certificate
}

// startProxy runs the proxy with services, YAML entries of the services
// list, on free loopback ports.
func startProxy(t *testing.T, services string) *gatehouse {
	t.Helper()
	ca := testpki.NewCA(t, "ldap")
	cert := ca.Server("gatehouse.test", "127.0.0.1")
	yaml := fmt.Sprintf(`listen:
  ldap: "127.0.0.1:%d"
  ldaps: "127.0.0.1:%d"
tls:
  certificates: [{cert: %q, key: %q}]
services:
%s`, testpeer.FreePort(t), testpeer.FreePort(t), cert.CertFile, cert.KeyFile, services)
	sp := &spy{Sniffer: &Sniffer{}, decided: make(chan sniffed, 16), upgraded: map[*proxy.ConnInfo]bool{}}
	h := proxy.Stream(sp)
	srv := proxytest.NewServer(t, yaml, map[string]proxy.Handler{"ldap": h, "ldaps": h}, nil)
	return &gatehouse{Server: srv, spy: sp, ca: ca}
}

// dial connects a go-ldap client to the ldap listener, or to the ldaps one.
func (gh *gatehouse) dial(t *testing.T, ldaps bool) *goldap.Conn {
	t.Helper()
	url := "ldap://" + gh.Addr("ldap")
	if ldaps {
		url = "ldaps://" + gh.Addr("ldaps")
	}
	c, err := goldap.DialURL(url, goldap.DialWithTLSConfig(&tls.Config{RootCAs: gh.ca.Pool(), ServerName: "gatehouse.test"}))
	if err != nil {
		t.Fatal(err)
	}
	c.SetTimeout(10 * time.Second)
	t.Cleanup(func() { c.Close() })
	return c
}

// clientTo runs client on a new connection and returns what the Sniffer
// decided for it and the client's error. The client ends when the proxy
// closes the connection: after a refusal, or when the target has closed.
func (gh *gatehouse) clientTo(t *testing.T, ldaps bool, client func(*goldap.Conn) error) (sniffed, error) {
	t.Helper()
	err := client(gh.dial(t, ldaps))
	select {
	case g := <-gh.spy.decided:
		return g, err
	case <-time.After(proxytest.Wait):
		t.Fatalf("the Sniffer never decided; the client says %v", err)
		return sniffed{}, err
	}
}

// sink is a target that reads one LDAP message of every connection, hands
// it to the test and hangs up.
type sink struct {
	ln       net.Listener
	received chan []byte
	wg       sync.WaitGroup
}

func startSink(t *testing.T) *sink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{ln: ln, received: make(chan []byte, 16)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(proxytest.Wait))
			msg, err := readMessage(c, DefaultMaxMessage)
			if err == nil {
				s.received <- msg
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); s.wg.Wait() })
	return s
}

func (s *sink) port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// firstMessage returns the first LDAPMessage a go-ldap client sends for
// client: real client encodings for table tests.
func firstMessage(t *testing.T, client func(*goldap.Conn) error) []byte {
	t.Helper()
	cc, sc := net.Pipe()
	c := goldap.NewConn(cc, false)
	c.Start()
	done := make(chan struct{})
	go func() {
		defer close(done)
		client(c)
	}()
	msg, err := readMessage(sc, DefaultMaxMessage)
	sc.Close()
	<-done
	c.Close()
	if err != nil {
		t.Fatalf("reading the client's first message: %v", err)
	}
	return msg
}

func bind(name, password string) func(*goldap.Conn) error {
	return func(c *goldap.Conn) error { return c.Bind(name, password) }
}

// ldapResult decodes an LDAP response message and returns its messageID,
// protocolOp tag and resultCode; the test fails when b is none.
func ldapResult(t *testing.T, b []byte) (id int64, op ber.Tag, code uint16) {
	t.Helper()
	p, err := ber.DecodePacketErr(b)
	if err != nil {
		t.Fatalf("reply %x does not decode: %v", b, err)
	}
	if len(p.Children) < 2 || len(p.Children[1].Children) < 3 {
		t.Fatalf("reply is no LDAPResult: %s", ber.DescribePacket(p))
	}
	if lerr := goldap.GetLDAPError(p); lerr != nil {
		var e *goldap.Error
		if !errors.As(lerr, &e) {
			t.Fatalf("reply: %v", lerr)
		}
		code = e.ResultCode
	}
	return p.Children[0].Value.(int64), p.Children[1].Tag, code
}

// fixture reads a captured message from testdata.
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// said is what a refusal says in an LDAP diagnostic message: its detail, or
// its reason when it has none; "" for no refusal.
func said(err error) string {
	if err == nil {
		return ""
	}
	r := proxy.AsRefusal(err)
	if r == nil {
		return ""
	}
	if r.Detail != "" {
		return r.Detail
	}
	return string(r.Reason)
}

// refusalSaying returns the refusal that says text: one of the package's,
// or the proxy's reason of that name.
func refusalSaying(text string) *proxy.Refusal {
	for _, r := range []*proxy.Refusal{errAnonymous, errUnauthBind, errSASLNoName, errBindMethod, errNoDomain,
		errNotBind, errBadBind, errBadDN, errOtherService, errUncheckable, errNestedStartTLS, errEarlyData,
		errLateStartTLS, errNotMessage, errMalformed, errIndefinite, errLongLength, errHighTag, errEncoding} {
		if r.Detail == text {
			return r
		}
	}
	return &proxy.Refusal{Reason: proxy.Reason(text)}
}
