package configs_test

import (
	"crypto/x509"
	"encoding/pem"
	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/gatehouse-pbx/gatehouse/configs"
)

// TestAgentsExample checks the edge keys of the agents contract, merged
// into the main example as the contract says they are.
func TestAgentsExample(t *testing.T) {
	fx := newFixture(t)
	main, err := os.ReadFile("testdata/gatehouse.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	agents, err := os.ReadFile("testdata/agents.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var m, a yaml.Node
	if err := yaml.Unmarshal(main, &m); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(agents, &a); err != nil {
		t.Fatal(err)
	}
	// The agents example has its own services list: a name served by an
	// agent replaces the main example's service of that name.
	mm, am := m.Content[0], a.Content[0]
	agentNames := map[string]bool{}
	for i := 0; i < len(am.Content); i += 2 {
		k, v := am.Content[i], am.Content[i+1]
		if k.Value != "services" {
			mm.Content = append(mm.Content, k, v)
			continue
		}
		for _, s := range v.Content {
			agentNames[s.Content[1].Value] = true
		}
		for j := 0; j < len(mm.Content); j += 2 {
			if mm.Content[j].Value == "services" {
				list := mm.Content[j+1]
				var kept []*yaml.Node
				for _, s := range list.Content {
					if !agentNames[s.Content[1].Value] {
						kept = append(kept, s)
					}
				}
				list.Content = append(kept, v.Content...)
			}
		}
	}
	merged, err := yaml.Marshal(&m)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer(
		"/etc/gatehouse/tls/example.com.crt", fx.cert,
		"/etc/gatehouse/tls/example.com.key", fx.key,
		"/etc/gatehouse/tls/phones-ca.crt", fx.cert,
		"/etc/gatehouse/tls/pbx-ca.crt", fx.cert,
		"/etc/gatehouse/tls/devices-ca.crt", fx.cert,
		"$2a$10$...", fx.hash,
	).Replace(string(merged))
	c, err := configs.Parse("merged.yaml", []byte(text))
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	if c.Agents.Accounts[1].ClientCAPool == nil {
		t.Error("devices: client_ca not loaded")
	}
	c.Agents.Accounts[1].ClientCAPool = nil
	want := configs.Agents{
		Listen: ":7443", Heartbeat: 15 * time.Second, MaxStreams: 1000, MaxTunnels: 1000,
		Accounts: []configs.AgentAccount{
			{Name: "hq-lan", TokenHash: fx.hash, Names: []string{"example.com", "example.com/branch", "hq.example.com"}},
			{Name: "devices", ClientCA: fx.cert, Names: []string{"*.devices.example.com"}},
		},
	}
	if !reflect.DeepEqual(c.Agents, want) {
		t.Errorf("agents:\n got %+v\nwant %+v", c.Agents, want)
	}
	hq := c.Service("hq.example.com")
	if hq == nil || hq.Agent != "hq-lan" || hq.Target != "" || !reflect.DeepEqual(hq.Allow.URLs, []string{"/PBX0/MY", "/PBX0/WEBSOCKET", "/PBX0/APPS/"}) {
		t.Errorf("hq.example.com: %+v", hq)
	}
	for name, want := range map[string]string{
		"dev-4711.devices.example.com": "*.devices.example.com",
		"DEV-1.Devices.Example.com":    "*.devices.example.com",
		"a.b.devices.example.com":      "", // "*" is exactly one label
		"devices.example.com":          "",
		"example.com":                  "example.com",
	} {
		s := c.Service(name)
		if got := ""; s != nil {
			got = s.Name
			if got != want {
				t.Errorf("Service(%q) = %q, want %q", name, got, want)
			}
		} else if want != "" {
			t.Errorf("Service(%q) = nil, want %q", name, want)
		}
	}
	if !strings.Contains(c.Summary(), "  hq.example.com -> agent hq-lan\n") || !strings.Contains(c.Summary(), "agents: :7443, 2 accounts, heartbeat 15s\n") {
		t.Errorf("summary:\n%s", c.Summary())
	}
}

// TestAgentExample checks that every key of the agent file's contract
// lands in its field.
func TestAgentExample(t *testing.T) {
	fx := newFixture(t)
	data, err := os.ReadFile("testdata/agent.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fp := configs.Fingerprint(leaf(t, fx.cert))
	text := strings.Replace(string(data), `"sha256/2b7c1f...="`, `"`+fp+`"`, 1)
	if !configs.IsAgentFile([]byte(text)) {
		t.Error("IsAgentFile: false")
	}
	c, err := configs.ParseAgent("testdata/agent.example.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Fingerprint) != 32 {
		t.Errorf("fingerprint not decoded: %x", c.Fingerprint)
	}
	c.Fingerprint = nil
	want := &configs.AgentConfig{
		File:            "testdata/agent.example.yaml",
		Edges:           []string{"gatehouse.example.com:7443", "gatehouse2.example.com:7443"},
		Account:         "hq-lan",
		Token:           "the secret whose bcrypt hash is the edge's token_hash",
		EdgeFingerprint: fp,
		Services: []configs.AgentService{
			{Name: "hq.example.com", Target: "172.16.0.10", Ports: map[string]int{"http": 80, "https": 443}, TLSVerify: true},
			{Name: "example.com", Target: "172.16.0.10", Ports: map[string]int{"h323": 1720, "h323s": 1300, "ldaps": 636, "sip": 5060}},
		},
		Log:             configs.Log{Level: "info", Format: "text"},
		DialTimeout:     5 * time.Second,
		ShutdownTimeout: 30 * time.Second,
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("\n got %+v\nwant %+v", c, want)
	}

	// The commented alternative: a client certificate and a CA.
	text = strings.NewReplacer(`token: "the secret whose bcrypt hash is the edge's token_hash"`, "",
		"# cert: /etc/gatehouse-agent/agent.crt", "cert: "+fx.dir+"/agent.crt",
		"# key:  /etc/gatehouse-agent/agent.key", "key: "+fx.dir+"/agent.key",
		`edge_fingerprint: "sha256/2b7c1f...="`, "",
		"# edge_ca: /etc/gatehouse-agent/edge-ca.crt", "edge_ca: "+fx.cert).Replace(string(data))
	agentCert := testpki.NewCA(t, "agents").Client("hq-lan")
	move(t, agentCert.CertFile, fx.dir+"/agent.crt")
	move(t, agentCert.KeyFile, fx.dir+"/agent.key")
	c, err = configs.ParseAgent("agent.yaml", []byte(text))
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	if c.Loaded == nil || c.EdgeCAPool == nil || c.Fingerprint != nil {
		t.Errorf("certificate %v, CA %v, fingerprint %x", c.Loaded != nil, c.EdgeCAPool != nil, c.Fingerprint)
	}
	if want := "agent: account hq-lan (certificate), edges gatehouse.example.com:7443, gatehouse2.example.com:7443, verified by CA " + fx.cert + "\n"; !strings.HasPrefix(c.Summary(), want) {
		t.Errorf("summary:\n%s\nwant prefix\n%s", c.Summary(), want)
	}
}

func leaf(t *testing.T, file string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestValidateAgents(t *testing.T) {
	fx := newFixture(t)
	base := "tls: {certificates: [{cert: {cert}, key: {key}}]}\n"
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"account unknown", base + `agents:
  listen: ":7443"
  accounts: [{name: a, token_hash: "{hash}", names: [a.example.com]}]
services:
  - name: a.example.com
    agent: b`, []string{`7: services[0].agent: "b" is not the name of an agents.accounts entry`}},
		{"name not allowed", base + `agents:
  listen: ":7443"
  accounts: [{name: a, token_hash: "{hash}", names: ["*.example.com"]}]
services:
  - name: x.y.example.com
    agent: a`, []string{`7: services[0].agent: account "a" may not register "x.y.example.com"`}},
		{"target and ports with agent", base + `agents:
  listen: ":7443"
  accounts: [{name: a, token_hash: "{hash}", names: [a.example.com]}]
services:
  - name: a.example.com
    agent: a
    target: 10.0.0.1
    ports: {http: 80}`, []string{
			`8: services[0].target: a service with agent has no target`,
			`9: services[0].ports: a service with agent has no ports`}},
		{"pattern without agent", base + `services:
  - {name: "*.example.com", target: 10.0.0.1, ports: {http: 80}}`, []string{`3: services[0].name: "*.example.com" may hold only`}},
		{"account problems", base + `agents:
  listen: ":7443"
  heartbeat: 0s
  accounts:
    - {name: a, token_hash: nohash, names: ["a.*.com"]}
    - {name: a, names: [b.example.com]}
    - {name: c, client_ca: {notpem}}`, []string{
			`4: agents.heartbeat: 0s is not a positive duration`,
			`6: agents.accounts[0].token_hash: not a bcrypt hash`,
			`6: agents.accounts[0].names[0]: "a.*.com" is not a service name or a pattern`,
			`7: agents.accounts[1].token_hash: missing: an account authenticates with token_hash or client_ca`,
			`7: agents.accounts[1].name: "a" is already the name of agents.accounts[0] (line 6)`,
			`8: agents.accounts[2].names: missing`,
			`8: agents.accounts[2].client_ca[0]: ` + fx.notPEM + ` holds no PEM certificate`}},
		{"listen without certificates", `agents: {listen: ":7443"}`, []string{`1: agents.listen: agents dial in over TLS and need tls.certificates`}},
		{"listen conflicts", base + `listen: {https: ":7443"}
agents: {listen: ":7443", accounts: [{name: a, token_hash: "{hash}", names: [a]}]}`,
			[]string{`3: agents.listen: ":7443" conflicts with listen.https ":7443" (line 2)`}},
		{"unknown key", base + `agents: {listen: ":7443", acounts: []}`, []string{`2: agents.acounts: unknown key (did you mean "accounts"?)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := configs.Parse("gatehouse.yaml", []byte(fx.expand(tt.yaml)))
			wantErrors(t, err, tt.want)
		})
	}
}

func TestValidateAgentFile(t *testing.T) {
	fx := newFixture(t)
	good := `edges: ["edge.example.com:7443"]
account: hq
token: secret
edge_fingerprint: "sha256/K3wfAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
services:
  - {name: hq.example.com, target: 10.0.0.1, ports: {http: 80}}
`
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"good", good, nil},
		{"no edges, no account, no secret, no verification", `services: [{name: a, target: b, ports: {http: 80}}]`, []string{
			`0: edges: missing`, `0: account: missing`, `0: token: missing`, `0: edge_fingerprint: missing: set edge_fingerprint or edge_ca`}},
		{"bad fingerprint", strings.Replace(good, "sha256/K3wfAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "md5/abc", 1),
			[]string{`4: edge_fingerprint: "md5/abc" does not start with "sha256/"`}},
		{"short fingerprint", strings.Replace(good, "K3wfAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "K3wf", 1),
			[]string{`4: edge_fingerprint: "sha256/K3wf" is not the base64 of a SHA-256 hash`}},
		{"both verifications", good + "edge_ca: {cert}\n", []string{`4: edge_fingerprint: set either edge_fingerprint or edge_ca`}},
		{"token and certificate", good + "cert: {cert}\nkey: {key}\n", []string{`3: token: set either token or cert and key`}},
		{"certificate of another account", strings.Replace(good, "token: secret", "cert: {cert}\nkey: {key}", 1),
			[]string{`3: cert: the certificate's CN is "example.com", not the account "hq"`}},
		{"bad edges", strings.Replace(good, `["edge.example.com:7443"]`, `["edge.example.com", ":7443", "edge:99999", "a:1", "A:1"]`, 1),
			[]string{`1: edges[0]: "edge.example.com" is not host:port`, `1: edges[1]: ":7443" is not host:port`,
				`1: edges[2]: port "99999"`, `1: edges[4]: "A:1" is already edges[3]`}},
		{"bad services", strings.Replace(good, `{name: hq.example.com, target: 10.0.0.1, ports: {http: 80}}`,
			"{name: HQ, target: 10.0.0.1:80, ports: {htp: 80}}\n  - {name: hq, target: x, ports: {}, tls_verify: maybe}", 1), []string{
			`6: services[0].target: "10.0.0.1:80" is not an IP address or DNS name`,
			`6: services[0].ports.htp: unknown service type (did you mean "http"?)`,
			`7: services[1].name: "hq" is already the name of services[0] (line 6)`,
			`7: services[1].ports: missing`,
			`7: services[1].tls_verify: "maybe" is not true or false`}},
		{"unknown key", good + "edge_fingerprnt: x\n", []string{`7: edge_fingerprnt: unknown key (did you mean "edge_fingerprint"?)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := configs.ParseAgent("agent.yaml", []byte(fx.expand(tt.yaml)))
			wantErrors(t, err, tt.want)
		})
	}
}
