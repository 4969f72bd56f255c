package configs_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
)

func ExampleParse() {
	_, err := configs.Parse("gatehouse.yaml", []byte(`
blacklist:
  treshold: 5
services:
  - name: example.com
    target: 172.16.0.10
    ports: {h323: 1720, h323s: 0}
`))
	fmt.Println(err)
	// Output:
	// gatehouse.yaml:3: blacklist.treshold: unknown key (did you mean "threshold"?)
	// gatehouse.yaml:7: services[0].ports.h323s: port 0 is not from 1 to 65535
}

// loadExample loads testdata/gatehouse.example.yaml, the configuration
// contract, with its files replaced by ones made for the test.
func loadExample(t testing.TB) (*configs.Config, fixture) {
	t.Helper()
	fx := newFixture(t)
	data, err := os.ReadFile("testdata/gatehouse.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	yaml := strings.NewReplacer(
		"/etc/gatehouse/tls/example.com.crt", fx.cert,
		"/etc/gatehouse/tls/example.com.key", fx.key,
		"/etc/gatehouse/tls/phones-ca.crt", fx.cert,
		"/etc/gatehouse/tls/pbx-ca.crt", fx.cert,
		"$2a$10$...", fx.hash,
	).Replace(string(data))
	c, err := configs.Parse("testdata/gatehouse.example.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return c, fx
}

// TestExample checks that every key of the contract lands in its field.
func TestExample(t *testing.T) {
	c, fx := loadExample(t)

	// What was read from files; cleared below to compare the rest.
	if leaf := c.TLS.Certificates[0].Loaded.Leaf; leaf == nil || leaf.Subject.CommonName != "example.com" {
		t.Errorf("certificate not loaded: %+v", c.TLS.Certificates[0].Loaded)
	}
	if c.TLS.ClientCAPool == nil || c.TLS.TargetCAPool == nil {
		t.Error("CA pools not loaded")
	}
	if c.Admin.Loaded != nil {
		t.Error("admin.cert is not set, but admin has a certificate of its own")
	}
	c.TLS.Certificates[0].Loaded = tls.Certificate{}
	c.TLS.ClientCAPool, c.TLS.TargetCAPool = nil, nil

	pfx := func(s ...string) []configs.Prefix {
		ps := make([]configs.Prefix, len(s))
		for i := range s {
			ps[i] = configs.Prefix{Prefix: netip.MustParsePrefix(s[i])}
		}
		return ps
	}
	for _, tt := range []struct {
		section   string
		got, want any
	}{
		{"listen", c.Listen, map[string]string{
			"http": ":80", "https": ":443", "sip": ":5060", "sips": ":5061",
			"ldap": ":389", "ldaps": ":636", "h323": ":1720", "h323s": ":1300",
		}},
		{"tls", c.TLS, configs.TLS{
			Certificates: []configs.CertKey{{Cert: fx.cert, Key: fx.key}},
			ClientCAs:    []string{fx.cert},
			TargetCAs:    []string{fx.cert},
			MinVersion:   "1.2",
			MinVersionID: tls.VersionTLS12,
		}},
		{"services", c.Services, []configs.Service{
			{
				Name:             "example.com",
				Target:           "172.16.0.10",
				Ports:            map[string]int{"h323": 1720, "h323s": 1300, "ldaps": 636},
				CheckCertificate: true,
				Allow: configs.Allow{Networks: map[string][]configs.Prefix{
					"h323s": pfx("0.0.0.0/0", "::/0"),
					"ldaps": pfx("192.0.2.0/24"),
				}},
			},
			{Name: "example.com/branch", Target: "172.16.1.10", Ports: map[string]int{"h323": 1720, "h323s": 1300}},
			{
				Name:   "hq.example.com",
				Target: "172.16.0.10",
				Ports:  map[string]int{"http": 80, "https": 443},
				Allow:  configs.Allow{URLs: []string{"/PBX0/MY", "/PBX0/WEBSOCKET", "/PBX0/DEVICES", "/PBX0/APPS/", "/CDR0/CALL-LIST"}},
			},
		}},
		{"blacklist", c.Blacklist, configs.Blacklist{
			Threshold:  20,
			Expiration: 10 * time.Minute,
			Whitelist:  pfx("198.51.100.7/32", "198.51.100.0/28"),
			Blacklist:  pfx("203.0.113.66/32"),
			State:      "/var/lib/gatehouse/state.json",
			IPv6Prefix: 64,
			MaxTracked: 100000,
		}},
		{"turn", c.TURN, configs.TURN{
			Listen:                ":3478",
			Realm:                 "example.com",
			RelayAddress:          "203.0.113.5",
			RelayPorts:            configs.PortRange{Min: 16384, Max: 32767},
			Accounts:              []configs.Account{{User: "phones", Password: "change-me"}},
			DenyPeers:             pfx("127.0.0.0/8", "::1/128", "169.254.0.0/16", "0.0.0.0/8", "::/128"),
			MaxAllocations:        1000,
			MaxAllocationsPerUser: 50,
			MaxLifetime:           time.Hour,
			AllocateTimeout:       10 * time.Second,
		}},
		{"admin", c.Admin, configs.Admin{
			Listen:         "127.0.0.1:8443",
			Users:          []configs.AdminUser{{Name: "admin", PasswordHash: fx.hash}},
			StateDir:       "/var/lib/gatehouse",
			SessionTimeout: 8 * time.Hour,
			Backups:        3,
		}},
		{"log", c.Log, configs.Log{Level: "info", Format: "text"}},
		{"limits", c.Limits, configs.Limits{
			FirstPacketTimeout: 5 * time.Second,
			FirstPacketMax:     64 * configs.KiB,
			DialTimeout:        5 * time.Second,
			IdleTimeout:        15 * time.Minute,
			MaxConnsPerIP:      500,
			MaxConns:           configs.DefaultMaxConns(configs.FileLimit()),
			MaxConnsPerRange:   25,
			BodyTimeout:        time.Minute,
			ShutdownTimeout:    30 * time.Second,
		}},
	} {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tt.section, tt.got, tt.want)
		}
	}
}

// TestExamplesAreTheContract checks that testdata holds every contract
// file as the lead wrote it, when the shared specification is checked out
// beside the repository.
func TestExamplesAreTheContract(t *testing.T) {
	for _, name := range []string{"gatehouse.example.yaml", "edge.example.yaml", "cluster.example.yaml", "agents.example.yaml", "agent.example.yaml"} {
		spec, err := os.ReadFile("../../shared/spec/" + name)
		if errors.Is(err, fs.ErrNotExist) {
			t.Skip("no shared/spec beside the repository to compare testdata with")
		}
		if err != nil {
			t.Fatal(err)
		}
		copy, err := os.ReadFile("testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(spec, copy) {
			t.Errorf("testdata/%s differs from shared/spec/%s", name, name)
		}
	}
}

func TestSummary(t *testing.T) {
	c, _ := loadExample(t)
	want := `listen: http :80, https :443, sip :5060, sips :5061, ldap :389, ldaps :636, h323 :1720, h323s :1300
3 services
  example.com -> 172.16.0.10: ldaps 636, h323 1720, h323s 1300 (check certificate)
  example.com/branch -> 172.16.1.10: h323 1720, h323s 1300
  hq.example.com -> 172.16.0.10: http 80, https 443
blacklist: threshold 20 a minute, expiration 10m0s, 2 whitelisted, 1 blacklisted, state /var/lib/gatehouse/state.json
turn: :3478, realm example.com, 1 account, relay 203.0.113.5 ports 16384-32767
admin: 127.0.0.1:8443, 1 user
`
	if got := c.Summary(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}

	c, err := configs.Parse("", []byte("turn: {listen: \":3478\"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	want = `listen: none
0 services
blacklist: threshold 20 a minute, expiration 10m0s, 0 whitelisted, 0 blacklisted, state none
turn: :3478, STUN only
admin: off
`
	if got := c.Summary(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestServiceLookup(t *testing.T) {
	c, _ := loadExample(t)
	hand := &configs.Config{Services: c.Services} // built without Load: no index
	for _, cfg := range []*configs.Config{c, hand} {
		if s := cfg.Service("EXAMPLE.COM"); s != &c.Services[0] {
			t.Errorf("Service(EXAMPLE.COM) = %v", s)
		}
		if s := cfg.Service("Example.com/Branch"); s != &c.Services[1] {
			t.Errorf("Service(Example.com/Branch) = %v", s)
		}
		if s := cfg.Service("example"); s != nil {
			t.Errorf("Service(example) = %v, want nil: names match exactly", s)
		}
	}
	s := c.Service("hq.example.com")
	if p, ok := s.Port("https"); p != 443 || !ok {
		t.Errorf("Port(https) = %d, %v", p, ok)
	}
	if p, ok := s.Port("sip"); p != 0 || ok {
		t.Errorf("Port(sip) = %d, %v; want none", p, ok)
	}
}

// TestEdgeExample loads testdata/edge.example.yaml (the contract of issue
// 15, checked against shared/spec by TestExamplesAreTheContract) and checks that
// its keys land in their fields.
func TestEdgeExample(t *testing.T) {
	data, err := os.ReadFile("testdata/edge.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := configs.Parse("testdata/edge.example.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen[configs.ListenAny] != ":443" {
		t.Errorf("listen.any: %q", c.Listen)
	}
	if c.TLS.MinVersion != "1.2" || c.TLS.MinVersionID != tls.VersionTLS12 {
		t.Errorf("tls.min_version: %q (%#x)", c.TLS.MinVersion, c.TLS.MinVersionID)
	}
	want := &configs.ACME{Email: "pki@example.com", CA: "https://acme-v02.api.letsencrypt.org/directory",
		Names: []string{"hq.example.com", "branch-a.example.com"}, StateDir: "/var/lib/gatehouse/acme"}
	if !reflect.DeepEqual(c.TLS.ACME, want) {
		t.Errorf("tls.acme: %+v, want %+v", c.TLS.ACME, want)
	}
	if len(c.Services) != 1 || c.Services[0].ProxyProtocol != "v2" {
		t.Errorf("services[0].proxy_protocol: %+v", c.Services)
	}
}
