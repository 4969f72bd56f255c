package configs_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
)

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		// yaml.v3 names the line of the mapping the problem is in.
		{"syntax error", `listen:
  http: ":80"
 sip: ":5060"`, []string{`2: : did not find expected key`}},
		{"tab indentation", "listen:\n\thttp: \":80\"\n", []string{`2: : found character that cannot start any token`}},
		{"unknown key with suggestion", `blacklist:
  treshold: 5`, []string{`2: blacklist.treshold: unknown key (did you mean "threshold"?)`}},
		{"unknown key, case differs", `Listen: {}`, []string{`1: Listen: unknown key (did you mean "listen"?)`}},
		{"unknown key, nothing close", `frobnicate: true`, []string{`1: frobnicate: unknown key`}},
		{"unknown key in a list item", `services:
  - name: a
    target: a.lan
    ports: {http: 80}
    nmae: b`, []string{`5: services[0].nmae: unknown key (did you mean "name"?)`}},
		{"key written twice", `log:
  level: debug
  level: info`, []string{`3: log.level: key already set at line 2`}},
		{"map key written twice", `listen: {http: ":80", http: ":81"}`, []string{`1: listen.http: key already set at line 1`}},
		{"values that do not decode", `blacklist:
  threshold: many
  expiration: 10
  whitelist: [192.0.2.1, 192.0.2.300]
services:
  - {name: a, target: a.lan, ports: {http: 80}, check_certificate: maybe}
limits: {first_packet_max: 64KB}`, []string{
			`2: blacklist.threshold: "many" is not a whole number`,
			`3: blacklist.expiration: "10" is not a duration like 30s, 10m or 1h`,
			`4: blacklist.whitelist[1]: "192.0.2.300" is not an IP address or CIDR network`,
			`6: services[0].check_certificate: "maybe" is not true or false`,
			`7: limits.first_packet_max: "64KB" is not a size like 65536, 64KiB or 1MiB`,
		}},
		{"several bad values on one line", `services:
  - {name: a, target: a.lan, ports: {http: x, https: 443, sip: y}}`, []string{
			`2: services[0].ports.http: "x" is not a whole number`,
			`2: services[0].ports.sip: "y" is not a whole number`,
		}},
		{"wrong shapes", `tls: [a]
services: {name: a}
listen: ":80"
blacklist: {whitelist: 192.0.2.1, threshold: [1]}`, []string{
			`1: tls: must be a mapping of keys, not a list`,
			`2: services: must be a list, not a mapping`,
			`3: listen: must be a mapping of keys, not a single value`,
			`4: blacklist.whitelist: must be a list, not a single value`,
			`4: blacklist.threshold: must be a single value, not a list`,
		}},
		{"custom type given a list", `turn: {relay_ports: [1, 2]}`,
			[]string{`1: turn.relay_ports: must be a single value, not a list`}},
		{"empty values", `listen:
  http:
blacklist:
  whitelist: [192.0.2.1, ~]`, []string{
			`2: listen.http: missing value`,
			`4: blacklist.whitelist[1]: empty list item`,
		}},
		{"empty sections", `tls:
turn:
blacklist:
  threshold:`, nil},
		{"a key that is not a name", `listen: {[a]: ":80"}`, []string{`1: listen: a key must be a name, not a list`}},
		{"root is not a mapping", `- listen`, []string{`1: : must be a mapping of keys, not a list`}},
		{"a mapping merging itself", `blacklist: &b {<<: *b}`, []string{`1: blacklist.<<: a mapping cannot merge itself`}},
		{"merging a value", `blacklist: {<<: 5}`, []string{`1: blacklist.<<: can merge only a mapping`}},
		{"an unknown key merged twice is reported once", `base: &n {network: [192.0.2.0/24]}
services:
  - {name: a, target: a.lan, ports: {http: 80}, allow: {<<: *n}}
  - {name: b, target: b.lan, ports: {http: 80}, allow: {<<: *n}}`, []string{
			`1: base: unknown key`,
			`1: services[0].allow.network: unknown key (did you mean "networks"?)`,
			`1: services[1].allow.network: unknown key (did you mean "networks"?)`,
		}},
		{"aliases expanding without bound", billionLaughs(),
			[]string{`2: : the document expands to too many values (aliases repeated too often)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := configs.Parse("test.yaml", []byte(tt.yaml))
			wantErrors(t, err, tt.want)
		})
	}
}

// billionLaughs is a document of 3 KB whose aliases name a million list
// items: 100 services, each allowing 100 lists of 100 networks.
func billionLaughs() string {
	var b strings.Builder
	b.WriteString("services:\n  - &s {name: a, target: t, ports: {http: 80}, allow: {networks: {k0: &l [&p 10.0.0.0/8")
	b.WriteString(strings.Repeat(", *p", 99) + "]")
	for i := 1; i < 100; i++ {
		fmt.Fprintf(&b, ", k%d: *l", i)
	}
	b.WriteString("}}}\n" + strings.Repeat("  - *s\n", 99))
	return b.String()
}

func TestMergeAndAliases(t *testing.T) {
	_, err := configs.Parse("test.yaml", []byte(`
defaults: &pbx
  target: 172.16.0.10
  ports: {h323: 1720}
  allow:
    networks: {h323: &lan [192.0.2.0/24]}
services:
  - <<: *pbx
    name: a.example.com
  - <<: *pbx
    name: b.example.com
    target: 172.16.0.11
blacklist: {whitelist: *lan}
`))
	wantErrors(t, err, []string{`2: defaults: unknown key`})

	// The same document without the holder of the anchor loads.
	c, err := configs.Parse("test.yaml", []byte(`
services:
  - &pbx
    name: a.example.com
    target: 172.16.0.10
    ports: {h323: 1720}
    allow:
      networks: {h323: &lan [192.0.2.0/24]}
  - <<: *pbx
    name: b.example.com
    target: 172.16.0.11
blacklist: {whitelist: *lan}
`))
	if err != nil {
		t.Fatal(err)
	}
	b := c.Service("b.example.com")
	if b == nil || b.Target != "172.16.0.11" || b.Ports["h323"] != 1720 || b.Allow.Networks["h323"][0].String() != "192.0.2.0/24" {
		t.Errorf("merged service = %+v", b)
	}
	if len(c.Blacklist.Whitelist) != 1 || c.Blacklist.Whitelist[0].String() != "192.0.2.0/24" {
		t.Errorf("whitelist = %v", c.Blacklist.Whitelist)
	}
}

func TestErrorFormat(t *testing.T) {
	_, err := configs.Parse("/etc/gatehouse/gatehouse.yaml", []byte("log:\n  level: loud\n  colour: red\n"))
	want := `/etc/gatehouse/gatehouse.yaml:2: log.level: "loud" is not one of debug, info, warn, error
/etc/gatehouse/gatehouse.yaml:3: log.colour: unknown key`
	if err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}
	e := &configs.Error{Line: 3, Key: "log", Msg: "m"}
	if got := e.Error(); got != "line 3: log: m" {
		t.Errorf("without a file: %q", got)
	}
}

func TestLoad(t *testing.T) {
	fx := newFixture(t)
	t.Run("missing file", func(t *testing.T) {
		name := filepath.Join(fx.dir, "missing.yaml")
		_, err := configs.Load(name)
		if err == nil || err.Error() != name+": no such file or directory" {
			t.Errorf("got %v", err)
		}
	})
	t.Run("relative paths are relative to the file", func(t *testing.T) {
		name := filepath.Join(fx.dir, "gatehouse.yaml")
		data := "tls:\n  certificates: [{cert: example.com.crt, key: example.com.key}]\n  client_cas: [example.com.crt]\n" +
			"blacklist: {state: state.json}\nadmin: {cert: /abs/a.crt, key: example.com.key, state_dir: state}\n"
		if err := os.WriteFile(name, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := configs.Load(name)
		wantErrors(t, err, []string{`5: admin.cert: stat /abs/a.crt: no such file`})

		data = strings.Replace(data, "/abs/a.crt", "example.com.crt", 1)
		if err := os.WriteFile(name, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := configs.Load(name)
		if err != nil {
			t.Fatal(err)
		}
		if c.File != name || c.TLS.Certificates[0].Cert != fx.cert || c.TLS.ClientCAs[0] != fx.cert ||
			c.Blacklist.State != filepath.Join(fx.dir, "state.json") || c.Admin.Key != fx.key || c.Admin.Loaded == nil ||
			c.Admin.StateDir != filepath.Join(fx.dir, "state") {
			t.Errorf("paths not resolved against %s: %+v", fx.dir, c)
		}
	})
}

func TestDefaults(t *testing.T) {
	c, err := configs.Parse("", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, tu, l := c.Blacklist, c.TURN, c.Limits
	for _, d := range []struct {
		key       string
		got, want any
	}{
		{"blacklist.threshold", b.Threshold, 20},
		{"blacklist.expiration", b.Expiration, 10 * time.Minute},
		{"blacklist.ipv6_prefix", b.IPv6Prefix, 64},
		{"blacklist.max_tracked", b.MaxTracked, 100000},
		{"turn.relay_ports", tu.RelayPorts, configs.PortRange{Min: 49152, Max: 65535}},
		{"turn.max_allocations", tu.MaxAllocations, 1000},
		{"turn.max_allocations_per_user", tu.MaxAllocationsPerUser, 50},
		{"turn.max_lifetime", tu.MaxLifetime, time.Hour},
		{"turn.deny_peers", prefixes(tu.DenyPeers), "127.0.0.0/8 ::1/128 0.0.0.0/8 ::/128 169.254.0.0/16 fe80::/10"},
		{"log.level", c.Log.Level, "info"},
		{"log.format", c.Log.Format, "text"},
		{"limits.first_packet_timeout", l.FirstPacketTimeout, 5 * time.Second},
		{"limits.first_packet_max", l.FirstPacketMax, 64 * configs.KiB},
		{"limits.dial_timeout", l.DialTimeout, 5 * time.Second},
		{"limits.idle_timeout", l.IdleTimeout, 15 * time.Minute},
		{"limits.max_conns_per_ip", l.MaxConnsPerIP, 500},
		{"limits.max_conns", l.MaxConns, configs.DefaultMaxConns(configs.FileLimit())},
		{"limits.max_conns_per_range", l.MaxConnsPerRange, configs.Percent(25)},
		{"limits.body_timeout", l.BodyTimeout, time.Minute},
		{"limits.shutdown_timeout", l.ShutdownTimeout, 30 * time.Second},
		{"turn.allocate_timeout", c.TURN.AllocateTimeout, 10 * time.Second},
		{"health.interval", c.Health.Interval, 5 * time.Second},
		{"health.timeout", c.Health.Timeout, 2 * time.Second},
		{"health.fall", c.Health.Fall, 3},
		{"health.rise", c.Health.Rise, 2},
		{"health.http_path", c.Health.HTTPPath, "/"},
	} {
		if d.got != d.want {
			t.Errorf("%s = %v, want %v", d.key, d.got, d.want)
		}
	}
	// The default list is copied, not shared.
	c.TURN.DenyPeers[0] = configs.Prefix{}
	if !configs.DefaultDenyPeers[0].IsValid() {
		t.Error("changing a Config changed DefaultDenyPeers")
	}

	c, err = configs.Parse("", []byte(`
blacklist: {threshold: 3, expiration: 1h, ipv6_prefix: 56, max_tracked: 10}
turn: {relay_ports: 10000-10010, deny_peers: [], max_allocations: 5, max_allocations_per_user: 1, max_lifetime: 10m, allocate_timeout: 3s}
log: {level: debug, format: json}
limits: {first_packet_timeout: 1s, first_packet_max: 1MiB, dial_timeout: 2s, idle_timeout: 3m, max_conns_per_ip: 0, max_conns: 0, max_conns_per_range: 40%, body_timeout: 5s, shutdown_timeout: 4s}
`))
	if err != nil {
		t.Fatal(err)
	}
	b, tu, l = c.Blacklist, c.TURN, c.Limits
	if b.Threshold != 3 || b.Expiration != time.Hour || b.IPv6Prefix != 56 || b.MaxTracked != 10 ||
		tu.RelayPorts != (configs.PortRange{Min: 10000, Max: 10010}) || tu.DenyPeers == nil || len(tu.DenyPeers) != 0 ||
		tu.MaxAllocations != 5 || tu.MaxAllocationsPerUser != 1 || tu.MaxLifetime != 10*time.Minute || tu.AllocateTimeout != 3*time.Second ||
		c.Log != (configs.Log{Level: "debug", Format: "json"}) ||
		l != (configs.Limits{FirstPacketTimeout: time.Second, FirstPacketMax: configs.MiB, DialTimeout: 2 * time.Second,
			IdleTimeout: 3 * time.Minute, MaxConnsPerIP: 0, MaxConns: 0, MaxConnsPerRange: 40, BodyTimeout: 5 * time.Second, ShutdownTimeout: 4 * time.Second}) {
		t.Errorf("written values replaced by defaults: %+v %+v %+v %+v", b, tu, c.Log, l)
	}
}

func prefixes(ps []configs.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, " ")
}
