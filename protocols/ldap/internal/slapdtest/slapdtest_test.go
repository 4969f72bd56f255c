package slapdtest

import (
	"crypto/tls"
	"testing"

	goldap "github.com/go-ldap/ldap/v3"
)

func TestStart(t *testing.T) {
	s := Start(t, Config{Suffix: "dc=example,dc=com", Users: []User{{"alice", "alice-pw"}}})
	tlsConf := &tls.Config{RootCAs: s.CA.Pool(), ServerName: "127.0.0.1"}

	for _, tc := range []struct {
		name string
		dial func() (*goldap.Conn, error)
	}{
		{"ldap", func() (*goldap.Conn, error) { return goldap.DialURL(s.URL()) }},
		{"ldaps", func() (*goldap.Conn, error) {
			return goldap.DialURL(s.LDAPSURL(), goldap.DialWithTLSConfig(tlsConf))
		}},
		{"starttls", func() (*goldap.Conn, error) {
			c, err := goldap.DialURL(s.URL())
			if err == nil {
				if err = c.StartTLS(tlsConf); err != nil {
					c.Close()
				}
			}
			return c, err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.dial()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Bind(s.DN("alice"), "alice-pw"); err != nil {
				t.Fatalf("bind with the right password: %v", err)
			}
			err = c.Bind(s.DN("alice"), "wrong")
			if !goldap.IsErrorWithCode(err, goldap.LDAPResultInvalidCredentials) {
				t.Fatalf("bind with a wrong password: %v, want invalidCredentials", err)
			}
		})
	}
}

func TestNoTLS(t *testing.T) {
	s := Start(t, Config{Suffix: "dc=example,dc=org", NoTLS: true})
	c, err := goldap.DialURL(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.StartTLS(&tls.Config{InsecureSkipVerify: true}); err == nil {
		t.Fatal("StartTLS succeeded on a server without a certificate")
	}
}
