package proxy

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"testing"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
)

func TestResolveEncryptionMapping(t *testing.T) {
	ca := testpki.NewCA(t, "phones")
	cert := ca.Server("gatehouse.example.com")
	yaml := `
tls:
  certificates: [{cert: ` + cert.CertFile + `, key: ` + cert.KeyFile + `}]
  client_cas: [` + ca.File + `]
services:
  - name: both.example.com
    target: 10.0.0.1
    ports: {sip: 5060, sips: 5061, h323: 1720, h323s: 1300, ldap: 389, ldaps: 636}
  - name: checked.example.com
    target: 10.0.0.2
    ports: {sip: 5060, sips: 5061, ldap: 389, ldaps: 636}
    check_certificate: true
  - name: tlsonly.example.com
    target: pbx.internal
    ports: {sips: 5061, ldaps: 636}
  - name: plainonly.example.com
    target: 10.0.0.4
    ports: {sip: 5060, ldap: 389}
    ldap_starttls: true
  - name: Mixed.Example.com
    target: 10.0.0.5
    ports: {sip: 5060}
    allow:
      networks:
        sip: [192.0.2.0/24, "2001:db8::/32"]
`
	cfg, err := configs.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	tb := NewTable(cfg, nil)
	sip, _ := configs.LookupType("sip")
	sips, _ := configs.LookupType("sips")
	ldap, _ := configs.LookupType("ldap")
	ldaps, _ := configs.LookupType("ldaps")
	http, _ := configs.LookupType("http")
	inside := netip.MustParseAddr("192.0.2.7")
	outside := netip.MustParseAddr("198.51.100.7")

	for _, tc := range []struct {
		name         string
		client       netip.Addr
		typ          configs.ServiceType
		key          string
		identity, cn string
		wantAddr     string
		wantTLS      bool
		wantStartTLS bool
		wantRefusal  Reason
	}{
		{"both ports, plain stays plain", outside, sip, "both.example.com", "", "", "10.0.0.1:5060", false, false, ""},
		{"both ports, TLS stays TLS", outside, sips, "BOTH.example.com", "", "", "10.0.0.1:5061", true, false, ""},
		{"only TLS port: plain goes TLS", outside, sip, "tlsonly.example.com", "", "", "pbx.internal:5061", true, false, ""},
		{"only plain port: TLS goes plain", outside, sips, "plainonly.example.com", "", "", "10.0.0.4:5060", false, false, ""},
		{"check_certificate: CN matches", outside, sips, "checked.example.com", "alice", "Alice", "10.0.0.2:5061", true, false, ""},
		{"check_certificate: CN differs", outside, sips, "checked.example.com", "alice", "bob", "10.0.0.2:5060", false, false, ""},
		{"check_certificate: no certificate", outside, sips, "checked.example.com", "alice", "", "10.0.0.2:5060", false, false, ""},
		{"check_certificate: not a registration", outside, sips, "checked.example.com", "", "", "10.0.0.2:5060", false, false, ""},
		{"check_certificate does not cover LDAP", outside, ldaps, "checked.example.com", "", "", "10.0.0.2:636", true, false, ""},
		{"ldap_starttls on the plain port", outside, ldaps, "plainonly.example.com", "", "", "10.0.0.4:389", true, true, ""},
		{"ldap_starttls plain to plain", outside, ldap, "plainonly.example.com", "", "", "10.0.0.4:389", true, true, ""},
		{"unknown service", outside, sip, "nope.example.com", "", "", "", false, false, ReasonUnknownService},
		{"no port for the family", outside, http, "both.example.com", "", "", "", false, false, ReasonNoPort},
		{"network allowed", inside, sip, "mixed.example.com", "", "", "10.0.0.5:5060", false, false, ""},
		{"IPv6 network allowed", netip.MustParseAddr("2001:db8::5"), sip, "mixed.example.com", "", "", "10.0.0.5:5060", false, false, ""},
		{"network not allowed", outside, sip, "mixed.example.com", "", "", "", false, false, ReasonNetwork},
		{"networks only for the listed type", outside, sips, "mixed.example.com", "", "", "10.0.0.5:5060", false, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, ref := tb.Resolve(tc.client, tc.typ, tc.typ.TLS, tc.key, tc.identity, tc.cn)
			if tc.wantRefusal != "" {
				if ref == nil || ref.Reason != tc.wantRefusal {
					t.Fatalf("got route %+v, refusal %v; want refusal %q", r, ref, tc.wantRefusal)
				}
				return
			}
			if ref != nil {
				t.Fatalf("refused: %v", ref)
			}
			if r.Addr != tc.wantAddr || (r.TLS != nil) != tc.wantTLS || r.StartTLS != tc.wantStartTLS {
				t.Fatalf("route %s tls=%v starttls=%v; want %s tls=%v starttls=%v",
					r.Addr, r.TLS != nil, r.StartTLS, tc.wantAddr, tc.wantTLS, tc.wantStartTLS)
			}
			if r.TLS != nil && r.TLS.ServerName != r.Service.Target {
				t.Fatalf("TLS server name %q, want the target %q", r.TLS.ServerName, r.Service.Target)
			}
		})
	}
}

// registered is Agents with one agent's registration, for Resolve.
type registered map[string]map[string]int

func (r registered) Ports(account, name string) (map[string]int, bool) {
	p, ok := r[account+"/"+name]
	return p, ok
}

func (registered) Dial(context.Context, string, string, string, bool, netip.AddrPort) (net.Conn, error) {
	return nil, ErrNoTunnel
}

// TestResolveAgentCheckCertificate: a service behind an agent has no ports
// of its own; check_certificate applies over the ports its agent
// registered, and its TLS listener asks for the client certificate.
func TestResolveAgentCheckCertificate(t *testing.T) {
	ca := testpki.NewCA(t, "phones")
	cert := ca.Server("gatehouse.example.com")
	cfg, err := configs.Parse("test.yaml", []byte(`
tls:
  certificates: [{cert: `+cert.CertFile+`, key: `+cert.KeyFile+`}]
  client_cas: [`+ca.File+`]
agents:
  listen: 127.0.0.1:7443
  accounts: [{name: hq-lan, token_hash: "$2a$04$abcdefghijklmnopqrstuu5ZHyZLfyXBJPNLXhkr3p6YJfKdXCZEq", names: [example.com]}]
services:
  - {name: example.com, agent: hq-lan, check_certificate: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	tb := NewTable(cfg, nil)
	tb.agents = registered{"hq-lan/example.com": {"h323": 1720, "h323s": 1300, "sip": 5060, "sips": 5061}}
	for _, name := range []string{"h323s", "sips"} {
		if tb.serverTLS[name].ClientAuth != tls.RequestClientCert {
			t.Fatalf("listen.%s does not ask for the client certificate that check_certificate needs", name)
		}
		typ, _ := configs.LookupType(name)
		for _, tc := range []struct {
			identity, cn string
			wantTLS      bool
		}{{"alice", "Alice", true}, {"alice", "bob", false}, {"alice", "", false}} {
			r, ref := tb.Resolve(netip.MustParseAddr("198.51.100.7"), typ, true, "example.com", tc.identity, tc.cn)
			if ref != nil {
				t.Fatal(ref)
			}
			if r.Agent == nil || r.Agent.TLS != tc.wantTLS {
				t.Fatalf("%s, identity %q, certificate CN %q: agent route %+v, want TLS %v", name, tc.identity, tc.cn, r.Agent, tc.wantTLS)
			}
		}
	}
}
