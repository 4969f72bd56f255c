package ldap_test

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/health"
	"github.com/gatehouse-pbx/gatehouse/protocols/ldap/internal/slapdtest"
)

// TestHealthProbeRootDSE: the LDAP check reads slapd's root DSE, in plain
// LDAP and over LDAPS; a port that does not answer LDAP fails it.
func TestHealthProbeRootDSE(t *testing.T) {
	s := slapdtest.Start(t, slapdtest.Config{Suffix: "dc=example,dc=com"})
	probe := func(typ, addr string, conf *tls.Config) error {
		st, _ := configs.LookupType(typ)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return health.Probe(ctx, health.Spec{Addr: addr, Type: st, Host: "example.com", TLS: conf})
	}
	if err := probe("ldap", s.Addr, nil); err != nil {
		t.Errorf("root DSE over LDAP: %v", err)
	}
	roots := s.CA.Pool()
	if err := probe("ldaps", s.LDAPSAddr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}); err != nil {
		t.Errorf("root DSE over LDAPS: %v", err)
	}
	// LDAPS spoken to the plain port: the handshake fails.
	if err := probe("ldaps", s.Addr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}); err == nil {
		t.Error("TLS to the plain port passed the check")
	}
}
