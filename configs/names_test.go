package configs_test

import (
	"testing"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
)

// TestNamesFoldASCIIOnly: names compare with ASCII case ignored and with
// nothing else. Each look-alike below matched its service before, through
// strings.ToLower (the index) or strings.EqualFold (patterns, hand-built
// configs), while the target would have read other bytes.
func TestNamesFoldASCIIOnly(t *testing.T) {
	edge := testpki.NewCA(t, "edge").Server("edge.example.com")
	c, err := configs.Parse("names.yaml", []byte(`tls:
  certificates: [{cert: `+edge.CertFile+`, key: `+edge.KeyFile+`}]
services:
  - {name: kiosk.example.com, target: 127.0.0.1, ports: {http: 8080}}
  - {name: sip.example.com, target: 127.0.0.1, ports: {sip: 5060}}
  - {name: in.example.com, target: 127.0.0.1, ports: {http: 8081}}
  - {name: "*.sites.example.com", agent: fleet}
agents:
  listen: "127.0.0.1:7443"
  accounts: [{name: fleet, token_hash: "$2a$10$zSnVEEa5UNLXt3AtEumgGOba9hyarIiBHolW.r5xIpPWT/eRQZz1i", names: ["*.sites.example.com"]}]
`))
	if err != nil {
		t.Fatal(err)
	}
	hand := &configs.Config{Services: c.Services} // built without Parse: no index
	for _, tc := range []struct {
		name string
		want string // the service's name, "" for none
	}{
		{"kiosk.example.com", "kiosk.example.com"},
		{"KIOSK.Example.COM", "kiosk.example.com"},
		{"\u212Aiosk.example.com", ""}, // KELVIN SIGN: ToLower gives k
		{"\u017Fip.example.com", ""},   // LONG S: EqualFold gives s
		{"\u0130n.example.com", ""},    // İ: ToLower gives i
		{"sip.example.com\xfd", ""},
		{"a.sites.example.com", "*.sites.example.com"},
		{"A-1_b.SITES.example.com", "*.sites.example.com"},
		{"a.\u017Fites.example.com", ""},
		{"\u212A.sites.example.com", ""}, // the label a pattern's "*" stands for is a DNS label
		{"a b.sites.example.com", ""},
		{"a:1.sites.example.com", ""},
		{".sites.example.com", ""},
	} {
		for _, cfg := range []*configs.Config{c, hand} {
			got := ""
			if s := cfg.Service(tc.name); s != nil {
				got = s.Name
			}
			if got != tc.want {
				t.Errorf("Service(%q) = %q, want %q (indexed: %v)", tc.name, got, tc.want, cfg == c)
			}
		}
	}
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"Example.COM", "example.com", true},
		{"example.com", "example.co", false},
		{"\u212A", "k", false},
		{"\u212A", "K", false},
		{"\u017F", "s", false},
		{"ÄB", "äb", false}, // only ASCII letters fold
		{"Äb", "ÄB", true},
	} {
		if got := configs.EqualName(tc.a, tc.b); got != tc.want {
			t.Errorf("EqualName(%q, %q) = %v", tc.a, tc.b, got)
		}
	}
	for in, want := range map[string]string{"": "", "abc": "abc", "AbC.COM": "abc.com", "\u212A\xfdX": "\u212A\xfdx", "İ": "İ"} {
		if got := configs.FoldName(in); got != want {
			t.Errorf("FoldName(%q) = %q, want %q", in, got, want)
		}
	}
}
