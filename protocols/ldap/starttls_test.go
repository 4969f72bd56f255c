package ldap

import (
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/gatehouse-pbx/gatehouse/protocols/ldap/internal/slapdtest"
)

// TestStartTLSTarget upgrades a connection to slapd's plain port the way
// the proxy does for ldap_starttls: StartTLS, then the TLS handshake, then
// the client's bind goes through inside TLS.
func TestStartTLSTarget(t *testing.T) {
	s := slapdtest.Start(t, slapdtest.Config{Suffix: "dc=example,dc=com", Users: []slapdtest.User{{UID: "alice", Password: "alice-pw"}}})
	conn, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if err := (&Sniffer{}).StartTLS(conn); err != nil {
		t.Fatalf("StartTLS: %v", err)
	}
	tc := tls.Client(conn, &tls.Config{RootCAs: s.CA.Pool(), ServerName: "127.0.0.1"})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake after StartTLS: %v", err)
	}
	c := goldap.NewConn(tc, true)
	c.Start()
	defer c.Close()
	if err := c.Bind(s.DN("alice"), "alice-pw"); err != nil {
		t.Fatalf("bind inside TLS: %v", err)
	}
}

// TestStartTLSTargetRefused: a target without a certificate refuses; the
// error says so and carries slapd's result.
func TestStartTLSTargetRefused(t *testing.T) {
	s := slapdtest.Start(t, slapdtest.Config{Suffix: "dc=example,dc=org", NoTLS: true})
	conn, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	err = (&Sniffer{}).StartTLS(conn)
	var lerr *goldap.Error
	if err == nil || !strings.Contains(err.Error(), "refused") || !errors.As(err, &lerr) {
		t.Fatalf("StartTLS to a server without TLS: %v, want a refusal with slapd's result", err)
	}
}

// TestStartTLSTargetAnswers covers targets that do not answer as asked.
func TestStartTLSTargetAnswers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer []byte
		want   string
	}{
		{"notice of disconnection", notice("shutting down"), "target disconnected"},
		{"another message's response", result(7, goldap.ApplicationExtendedResponse, goldap.LDAPResultSuccess, ""), "unexpected response"},
		{"a bind response", result(startTLSID, goldap.ApplicationBindResponse, goldap.LDAPResultSuccess, ""), "unexpected response"},
		{"not LDAP", []byte("HTTP/1.1 400 Bad Request\r\n\r\n"), "not an LDAP message"},
		{"a 10 MB claim", []byte{0x30, 0x84, 0x00, 0xa0, 0x00, 0x00}, "BER length too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc, sc := net.Pipe()
			served := make(chan []byte, 1)
			go func() {
				defer close(served)
				defer sc.Close()
				req, _ := readMessage(sc, DefaultMaxMessage)
				sc.Write(tc.answer) // returns once StartTLS stops reading and cc is closed
				served <- req
			}()
			err := (&Sniffer{}).StartTLS(cc)
			cc.Close()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("StartTLS: %v, want %q", err, tc.want)
			}
			if m, err := decodeHead(<-served); err != nil || m.extendedName() != oidStartTLS {
				t.Fatalf("the target was sent %+v, %v; want a StartTLS request", m, err)
			}
		})
	}
}
