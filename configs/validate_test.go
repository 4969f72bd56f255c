package configs_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/gatehouse-pbx/gatehouse/configs"
)

// wantErrors checks that err lists exactly the problems in want, in order,
// each written "LINE: KEY: MSG" where MSG may be cut short.
func wantErrors(t *testing.T, err error, want []string) {
	t.Helper()
	var got []string
	if err != nil {
		errs, ok := errors.AsType[configs.Errors](err)
		if !ok {
			t.Fatalf("error %v is a %T, not configs.Errors", err, err)
		}
		for _, e := range errs {
			got = append(got, fmt.Sprintf("%d: %s: %s", e.Line, e.Key, e.Msg))
		}
	}
	ok := len(got) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = strings.HasPrefix(got[i], want[i])
	}
	if !ok {
		t.Errorf("errors:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestValidate(t *testing.T) {
	fx := newFixture(t)
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		// listen
		{"unknown service type", `listen: {htps: ":443"}`,
			[]string{`1: listen.htps: unknown service type (did you mean "https"?)`}},
		{"address without port", `listen:
  http: "80"`,
			[]string{`2: listen.http: "80" is not host:port`}},
		{"port zero", `listen: {http: ":0"}`, []string{`1: listen.http: port "0" is not a number from 1 to 65535`}},
		{"port too high", `listen: {http: ":65536"}`, []string{`1: listen.http: port "65536" is not`}},
		{"port by name", `listen: {http: ":http"}`, []string{`1: listen.http: port "http" is not`}},
		{"bad host", `listen: {http: "bad_host!:80"}`, []string{`1: listen.http: "bad_host!" is not an IP address or DNS name`}},
		{"two listeners on one address", `listen:
  http: ":80"
  sip: ":80"`,
			[]string{`3: listen.sip: ":80" conflicts with listen.http ":80" (line 2)`}},
		{"every address conflicts with one address", `listen:
  http: "127.0.0.1:80"
  sip: "0.0.0.0:80"`,
			[]string{`3: listen.sip: "0.0.0.0:80" conflicts with listen.http "127.0.0.1:80" (line 2)`}},
		{"IPv4 wildcard conflicts with IPv6 loopback", `listen:
  http: "0.0.0.0:80"
  sip: "[::1]:80"`,
			[]string{`3: listen.sip: "[::1]:80" conflicts with listen.http`}},
		{"distinct addresses share a port", `listen:
  http: "127.0.0.1:80"
  sip: "127.0.0.2:80"
  ldap: "[::1]:80"`, nil},
		{"turn conflicts with a service", `listen:
  sip: ":5060"
turn:
  listen: ":5060"`,
			[]string{`4: turn.listen: ":5060" conflicts with listen.sip ":5060" (line 2)`}},
		{"turn tls_listen conflicts with turn listen", `tls: {certificates: [{cert: "{cert}", key: "{key}"}]}
turn:
  listen: "127.0.0.1:3478"
  tls_listen: ":3478"`,
			[]string{`4: turn.tls_listen: ":3478" conflicts with turn.listen "127.0.0.1:3478" (line 3)`}},
		{"admin on a service port", `tls: {certificates: [{cert: "{cert}", key: "{key}"}]}
listen: {https: ":443"}
admin:
  listen: "127.0.0.1:443"
  users: [{name: a, password_hash: "{hash}"}]`,
			[]string{`4: admin.listen: "127.0.0.1:443" is on port 443 of the https service (listen.https, line 2); the admin UI needs a port of its own`}},
		{"admin on a service port, admin written first", `tls: {certificates: [{cert: "{cert}", key: "{key}"}]}
admin:
  listen: ":8443"
  users: [{name: a, password_hash: "{hash}"}]
listen:
  https: "192.0.2.1:8443"`,
			[]string{`3: admin.listen: ":8443" is on port 8443 of the https service (listen.https, line 6)`}},
		{"TLS type without certificates", `listen: {sips: ":5061"}`,
			[]string{`1: listen.sips: sips is TLS and needs tls.certificates`}},
		{"turn TLS without certificates", `turn: {tls_listen: ":5349"}`,
			[]string{`1: turn.tls_listen: TURN over TLS needs tls.certificates`}},
		{"admin without certificates makes its own in the state directory", `admin:
  listen: ":8443"
  users: [{name: a, password_hash: "{hash}"}]`, nil},
		{"admin without certificates nor a state directory", `admin:
  listen: ":8443"
  users: [{name: a, password_hash: "{hash}"}]
  state_dir: ""`,
			[]string{`4: admin.state_dir: needed to keep the admin UI's self-signed certificate`}},

		// tls
		{"certificate file missing", `tls:
  certificates:
    - cert: {dir}/missing.crt
      key: "{key}"`,
			[]string{`3: tls.certificates[0].cert: stat ` + fx.dir + `/missing.crt: no such file or directory`}},
		{"key not written", `tls:
  certificates:
    - cert: "{cert}"`,
			[]string{`3: tls.certificates[0].key: missing`}},
		{"key does not match", `tls:
  certificates:
    - cert: "{cert}"
      key: "{otherkey}"`,
			[]string{`3: tls.certificates[0]: ` + fx.cert + ` and ` + fx.otherKey + `: tls: private key does not match public key`}},
		{"certificate is a directory", `tls:
  certificates:
    - {cert: "{dir}", key: "{key}"}`,
			[]string{`3: tls.certificates[0].cert: ` + fx.dir + ` is not a regular file`}},
		{"certificate holds no PEM", `tls:
  certificates:
    - {cert: "{notpem}", key: "{key}"}`,
			[]string{`3: tls.certificates[0]: ` + fx.notPEM + ` and ` + fx.key + `: tls: failed to find any PEM data in certificate input`}},
		{"CA files", `tls:
  client_cas: ["{cert}", "{notpem}"]
  target_cas:
    - {dir}/missing.crt`,
			[]string{
				`2: tls.client_cas[1]: ` + fx.notPEM + ` holds no PEM certificate`,
				`4: tls.target_cas[0]: stat ` + fx.dir + `/missing.crt: no such file`,
			}},
		{"unknown TLS version", `tls:
  min_version: "1.4"`,
			[]string{`2: tls.min_version: "1.4" is not one of "1.0", "1.1", "1.2" or "1.3"`}},
		{"TLS version as a number", `tls: {min_version: 1.2}`, nil},
		{"PROXY protocol v1", `services:
  - name: example.com
    target: 172.16.0.10
    ports: {sip: 5060}
    proxy_protocol: v1`,
			[]string{`5: services[0].proxy_protocol: "v1" is not "v2"`}},
		{"listen.any without certificates", `listen: {any: ":443"}`,
			[]string{`1: listen.any: listen.any accepts TLS too and needs tls.certificates`}},
		{"ACME", `tls:
  acme:
    ca: http://acme.example.com/dir
    names: [hq.example.com, localhost, HQ.example.com]
    ca_root: "{notpem}"`,
			[]string{
				`2: tls.acme.state_dir: missing`,
				`3: tls.acme.ca: "http://acme.example.com/dir" is not an https:// directory URL`,
				`4: tls.acme.names[1]: "localhost" is not a DNS name with a dot`,
				`4: tls.acme.names[2]: "HQ.example.com" is already tls.acme.names[0]`,
				`5: tls.acme.ca_root: ` + fx.notPEM + ` holds no PEM certificate`,
			}},
		{"check_certificate without client_cas", `services:
  - name: example.com
    target: pbx
    ports: {h323s: 1300}
    check_certificate: true`,
			[]string{`5: services[0].check_certificate: needs tls.client_cas`}},

		// services
		{"service without name, target or ports", `services:
  - allow: {urls: [/]}`,
			[]string{`2: services[0].name: missing`, `2: services[0].target: missing`, `2: services[0].ports: missing`}},
		{"bad service name", `services:
  - name: "exa mple.com"
    target: 10.0.0.1
    ports: {http: 80}`,
			[]string{`2: services[0].name: "exa mple.com" may hold only letters, digits, '.', '-', '_' and '/'`}},
		{"H.323 branch name", `services:
  - {name: example.com/branch_2, target: 10.0.0.1, ports: {h323: 1720}}`, nil},
		{"duplicate service name", `services:
  - name: example.com
    target: 10.0.0.1
    ports: {http: 80}
  - name: EXAMPLE.com
    target: 10.0.0.2
    ports: {http: 80}`,
			[]string{`5: services[1].name: "EXAMPLE.com" is already the name of services[0] (line 2)`}},
		{"target with a port", `services:
  - {name: a, target: "172.16.0.10:80", ports: {http: 80}}`,
			[]string{`2: services[0].target: "172.16.0.10:80" is not an IP address or DNS name`}},
		{"target is a bad IPv4 address", `services:
  - {name: a, target: 10.0.0.300, ports: {http: 80}}`,
			[]string{`2: services[0].target: "10.0.0.300" is not`}},
		{"ports on one line", `services:
  - name: a
    target: pbx.lan
    ports: {h323: 0, htps: 443, sip: 70000}`,
			[]string{
				`4: services[0].ports.h323: port 0 is not from 1 to 65535`,
				`4: services[0].ports.htps: unknown service type (did you mean "https"?)`,
				`4: services[0].ports.sip: port 70000 is not`,
			}},
		{"networks", `services:
  - name: a
    target: 2001:db8::1
    ports: {ldaps: 636}
    allow:
      networks:
        ldpas: [192.0.2.0/24]
        ldaps: [192.0.2.0/24, 192.0.2.0/33]`,
			[]string{
				`7: services[0].allow.networks.ldpas: unknown service type (did you mean "ldaps"?)`,
				`8: services[0].allow.networks.ldaps[1]: "192.0.2.0/33" is not an IP address or CIDR network`,
			}},
		{"urls", `services:
  - name: a
    target: a.lan
    ports: {http: 80}
    allow: {urls: [/PBX0/, PBX0/MY]}`,
			[]string{`5: services[0].allow.urls[1]: "PBX0/MY" does not start with "/"`}},

		// blacklist
		{"blacklist limits", `blacklist:
  threshold: 0
  expiration: -1m
  ipv6_prefix: 129
  max_tracked: 0`,
			[]string{
				`2: blacklist.threshold: 0 is below 1`,
				`3: blacklist.expiration: -1m0s is not a positive duration`,
				`4: blacklist.ipv6_prefix: 129 is not from 1 to 128`,
				`5: blacklist.max_tracked: 0 is below 1`,
			}},

		// turn
		{"accounts need a realm", `turn:
  listen: ":3478"
  relay_address: 192.0.2.5
  accounts: [{user: a, password: b}]`,
			[]string{`1: turn.realm: required with accounts or a secret`}},
		{"relaying on a wildcard listen needs a relay address", `turn:
  listen: ":3478"
  realm: example.com
  accounts: [{user: a, password: b}]`,
			[]string{`1: turn.relay_address: required when turn.listen (":3478") has no specific address`}},
		{"relay address of a specific listen is implied", `turn:
  listen: "192.0.2.5:3478"
  realm: example.com
  secret: s3cret`, nil},
		{"relay address IPv6", `turn:
  listen: "[::]:3478"
  realm: example.com
  relay_address: "2001:db8::5"
  secret: s3cret`,
			[]string{`4: turn.relay_address: 2001:db8::5: relays are IPv4 only`}},
		{"secret needs a realm", `turn:
  secret: s3cret`,
			[]string{`1: turn.realm: required`}},
		{"relay address", `turn: {relay_address: turn.example.com}`,
			[]string{`1: turn.relay_address: "turn.example.com" is not an IP address`}},
		{"alternate address", `turn:
  listen: "127.0.0.1:3478"
  alternate_address: 127.0.0.2`, nil},
		{"alternate address beside a wildcard listen", `turn:
  listen: ":3478"
  alternate_address: 127.0.0.2`,
			[]string{`3: turn.alternate_address: needs turn.listen on a specific IP address, the primary one (line 2 has ":3478")`}},
		{"alternate address is the primary one", `turn:
  listen: "127.0.0.1:3478"
  alternate_address: "::ffff:127.0.0.1"`,
			[]string{`3: turn.alternate_address: 127.0.0.1 is turn.listen's address (line 2)`}},
		{"alternate address of another family", `turn:
  listen: "127.0.0.1:3478"
  alternate_address: "::1"`,
			[]string{`3: turn.alternate_address: ::1 and turn.listen's 127.0.0.1 (line 2) are not of one address family`}},
		{"alternate address not local", `turn:
  listen: "127.0.0.1:3478"
  alternate_address: 192.0.2.77`,
			[]string{`3: turn.alternate_address: 192.0.2.77 is not an address of this machine`}},
		{"alternate address not an IP", `turn:
  listen: "127.0.0.1:3478"
  alternate_address: stun2.example.com`,
			[]string{`3: turn.alternate_address: "stun2.example.com" is not an IP address`}},
		{"alternate address without listen", `turn: {alternate_address: 127.0.0.2}`,
			[]string{`1: turn.alternate_address: needs turn.listen`}},
		{"alternate port past the last", `turn:
  listen: "127.0.0.1:65535"
  alternate_address: 127.0.0.2`,
			[]string{`3: turn.alternate_address: the alternate port is turn.listen's + 1, and 65535 is the last port`}},
		{"relay ports from 0", `turn: {relay_ports: 0-100}`, []string{`1: turn.relay_ports: 0-100: ports start at 1`}},
		{"relay ports reversed", `turn: {relay_ports: 200-100}`, []string{`1: turn.relay_ports: 200-100 is empty`}},
		{"relay ports out of range", `turn: {relay_ports: 1-70000}`,
			[]string{`1: turn.relay_ports: "1-70000" is not a port range like 49152-65535`}},
		{"accounts", `turn:
  realm: example.com
  accounts:
    - {user: phones, password: a}
    - {password: b}
    - {user: phones}`,
			[]string{
				`5: turn.accounts[1].user: missing`,
				`6: turn.accounts[2].password: missing`, // absent: reported where the item starts
				`6: turn.accounts[2].user: "phones" is already the user of turn.accounts[0] (line 4)`,
			}},
		{"turn limits", `turn:
  max_allocations: 0
  max_allocations_per_user: -1
  max_lifetime: 0s`,
			[]string{
				`2: turn.max_allocations: 0 is below 1`,
				`3: turn.max_allocations_per_user: -1 is below 1`,
				`4: turn.max_lifetime: 0s is not a positive duration`,
			}},

		// admin
		{"admin without users", `tls: {certificates: [{cert: "{cert}", key: "{key}"}]}
admin:
  listen: "127.0.0.1:8443"`,
			[]string{`2: admin.users: the admin listener refuses to start without users`}},
		{"admin users", `admin:
  users:
    - {name: root, password_hash: "{hash}"}
    - {name: root, password_hash: "$2a$10$..."}
    - {password_hash: "{hash}"}`,
			[]string{
				`4: admin.users[1].name: "root" is already the name of admin.users[0] (line 3)`,
				`4: admin.users[1].password_hash: missing or not a bcrypt hash`,
				`5: admin.users[2].name: missing`,
			}},
		{"admin cert without key", `admin: {cert: "{cert}"}`, []string{`1: admin.key: needed with admin.cert`}},
		{"admin key without cert", `admin: {key: "{key}"}`, []string{`1: admin.cert: needed with admin.key`}},
		{"admin key pair mismatch", `admin:
  cert: "{cert}"
  key: "{otherkey}"`,
			[]string{`1: admin: ` + fx.cert + ` and ` + fx.otherKey + `: tls: private key does not match`}},
		{"admin session and backups", `admin:
  session_timeout: 0s
  backups: -1`,
			[]string{`2: admin.session_timeout: 0s is not a positive duration`, `3: admin.backups: -1 is not from 0 to 100`}},
		{"admin session timeout without a unit", `admin: {session_timeout: 30}`,
			[]string{`1: admin.session_timeout:`}},
		{"admin with its own certificate", `admin:
  listen: "127.0.0.1:8443"
  users: [{name: a, password_hash: "{hash}"}]
  cert: "{cert}"
  key: "{key}"`, nil},

		// log and limits
		{"log", `log: {level: verbose, format: xml}`,
			[]string{`1: log.level: "verbose" is not one of debug, info, warn, error`, `1: log.format: "xml" is not text or json`}},
		{"limits", `limits:
  first_packet_timeout: 0s
  first_packet_max: 512
  dial_timeout: -5s
  idle_timeout: 0s
  max_conns_per_ip: -1
  shutdown_timeout: 0s
  max_conns: -2
  body_timeout: 0s`,
			[]string{
				`2: limits.first_packet_timeout: 0s is not a positive duration`,
				`3: limits.first_packet_max: 512 is not from 1KiB to 16MiB`,
				`4: limits.dial_timeout: -5s is not a positive duration`,
				`5: limits.idle_timeout: 0s is not`,
				`6: limits.max_conns_per_ip: -1 is negative (0 means no cap)`,
				`7: limits.shutdown_timeout: 0s is not`,
				`8: limits.max_conns: -2 is negative (0 means no cap)`,
				`9: limits.body_timeout: 0s is not a positive duration`,
			}},
		{"turn allocate timeout", `turn: {allocate_timeout: 0s}`,
			[]string{`1: turn.allocate_timeout: 0s is not a positive duration`}},
		{"first packet too large", `limits: {first_packet_max: 32MiB}`,
			[]string{`1: limits.first_packet_max: 32MiB is not from 1KiB to 16MiB`}},
		{"no cap on connections", `limits: {max_conns_per_ip: 0, max_conns: 0}`, nil},
		{"range share", "limits:\n  max_conns_per_range: 0%\n", []string{`2: limits.max_conns_per_range: 0% is not from 1% to 100%`}},
		{"range share above all", "limits:\n  max_conns: 10\n  max_conns_per_range: 101%\n", []string{`3: limits.max_conns_per_range: 101% is not from 1% to 100%`}},
		{"range share without sign", "limits:\n  max_conns_per_range: 25\n", []string{`2: limits.max_conns_per_range: "25" is not a percentage like 25%`}},

		// health
		{"health", `health:
  interval: 0s
  timeout: -1s
  fall: 0
  rise: 0
  http_path: "status page"`,
			[]string{
				`2: health.interval: 0s is not a positive duration`,
				`3: health.timeout: -1s is not a positive duration`,
				`4: health.fall: 0 is below 1`,
				`5: health.rise: 0 is below 1`,
				`6: health.http_path: "status page" is not a path beginning with /`,
			}},
		{"health timeout longer than interval", `health:
  interval: 2s
  timeout: 3s`,
			[]string{`3: health.timeout: 3s is longer than health.interval 2s (line 2)`}},
		{"health path with a space", `health: {http_path: "/a b"}`,
			[]string{`1: health.http_path: "/a b" is not a path`}},
		{"health written", `health: {interval: 10s, timeout: 1s, fall: 1, rise: 5, http_path: /PBX0/MY}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := configs.Parse("test.yaml", []byte(fx.expand(tt.yaml)))
			wantErrors(t, err, tt.want)
		})
	}
}

func TestWarnings(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want int
	}{
		{`tls: {min_version: "1.0"}`, 1},
		{`tls: {min_version: "1.1"}`, 1},
		{`tls: {min_version: "1.2"}`, 0},
		{``, 0},
	} {
		c, err := configs.Parse("", []byte(tc.yaml))
		if err != nil {
			t.Fatal(err)
		}
		if got := configs.Warnings(c); len(got) != tc.want || (tc.want > 0 && !strings.HasPrefix(got[0], "tls.min_version: ")) {
			t.Errorf("%s: warnings %q", tc.yaml, got)
		}
	}
}
