package configs_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"gopkg.in/yaml.v3"
)

func TestParsePrefix(t *testing.T) {
	tests := []struct{ in, want string }{
		{"192.0.2.1", "192.0.2.1/32"},
		{"2001:db8::1", "2001:db8::1/128"},
		{"192.0.2.77/24", "192.0.2.0/24"}, // host bits cleared
		{"0.0.0.0/0", "0.0.0.0/0"},
		{"::/0", "::/0"},
		{"2001:db8::/32", "2001:db8::/32"},
		{"::ffff:192.0.2.1", "192.0.2.1/32"},            // IPv4-mapped address unmapped
		{"::ffff:192.0.2.0/120", "192.0.2.0/24"},        // IPv4-mapped network unmapped
		{"::ffff:0:0/96", "0.0.0.0/0"},                  // all of IPv4, mapped
		{"::ffff:0:0/64", "::/64"},                      // wider than the mapped range: stays IPv6
		{"", `"" is not an IP address or CIDR network`}, // errors follow
		{"192.0.2.0/33", `"192.0.2.0/33" is not`},
		{"192.0.2.0/", `"192.0.2.0/" is not`},
		{"192.0.2.256", `"192.0.2.256" is not`},
		{"example.com", `"example.com" is not`},
		{"fe80::1%eth0", `"fe80::1%eth0": an address with a zone cannot name a network`},
	}
	for _, tt := range tests {
		p, err := configs.ParsePrefix(tt.in)
		got := p.String()
		if err != nil {
			got = err.Error()
		}
		if !strings.HasPrefix(got, tt.want) {
			t.Errorf("ParsePrefix(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestParsePortRange(t *testing.T) {
	tests := []struct{ in, want string }{
		{"16384-32767", "16384-32767"},
		{"3478", "3478-3478"},
		{"1 - 2", "1-2"},
		{"0-0", "0-0"},         // parses; validation refuses it
		{"200-100", "200-100"}, // likewise
		{"", `"" is not a port range like 49152-65535`},
		{"a-b", `"a-b" is not`},
		{"1-", `"1-" is not`},
		{"-5", `"-5" is not`},
		{"70000", `"70000" is not`},
		{"1-2-3", `"1-2-3" is not`},
	}
	for _, tt := range tests {
		r, err := configs.ParsePortRange(tt.in)
		got := r.String()
		if err != nil {
			got = err.Error()
		}
		if !strings.HasPrefix(got, tt.want) {
			t.Errorf("ParsePortRange(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want configs.ByteSize
		err  string
	}{
		{"65536", 65536, ""},
		{"64KiB", 64 << 10, ""},
		{"64 KiB", 64 << 10, ""},
		{"1MiB", 1 << 20, ""},
		{"2GiB", 2 << 30, ""},
		{"10B", 10, ""},
		{"0", 0, ""},
		{"", 0, `"" is not a size like 65536, 64KiB or 1MiB`},
		{"64KB", 0, `"64KB" is not`}, // 1000 or 1024? refused
		{"64k", 0, `"64k" is not`},
		{"1.5MiB", 0, `"1.5MiB" is not`},
		{"-1", 0, `"-1" is not`},
		{"KiB", 0, `"KiB" is not`},
		{"99999999999999999999", 0, `"99999999999999999999" is not`},
		{"9223372036854775807GiB", 0, `"9223372036854775807GiB" is too large`},
	}
	for _, tt := range tests {
		got, err := configs.ParseByteSize(tt.in)
		if got != tt.want || (err == nil) != (tt.err == "") || err != nil && !strings.HasPrefix(err.Error(), tt.err) {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d, %s", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestParsePercent(t *testing.T) {
	tests := []struct {
		in   string
		want configs.Percent
		err  string
	}{
		{"25%", 25, ""},
		{"100%", 100, ""},
		{"0%", 0, ""}, // parsed; validation refuses it with the key's line
		{"25", 0, `"25" is not a percentage like 25%`}, // 25 connections? refused
		{"%", 0, `"%" is not`},
		{"", 0, `"" is not`},
		{"2.5%", 0, `"2.5%" is not`},
		{"-5%", 0, `"-5%" is not`},
		{"+5%", 0, `"+5%" is not`},
		{" 5%", 0, `" 5%" is not`},
		{"5 %", 0, `"5 %" is not`},
		{"99999999999999999999%", 0, `"99999999999999999999%" is not`},
	}
	for _, tt := range tests {
		got, err := configs.ParsePercent(tt.in)
		if got != tt.want || (err == nil) != (tt.err == "") || err != nil && !strings.HasPrefix(err.Error(), tt.err) {
			t.Errorf("ParsePercent(%q) = %d, %v; want %d, %s", tt.in, got, err, tt.want, tt.err)
		}
	}
	if s := configs.Percent(25).String(); s != "25%" {
		t.Errorf("String = %s", s)
	}
}

func TestByteSizeString(t *testing.T) {
	for b, want := range map[configs.ByteSize]string{
		0: "0", 1000: "1000", 1024: "1KiB", 65536: "64KiB", 1536: "1536", 3 << 20: "3MiB", 1 << 30: "1GiB",
	} {
		if got := b.String(); got != want {
			t.Errorf("ByteSize(%d).String() = %s, want %s", int(b), got, want)
		}
	}
}

// TestMarshal checks that the custom types write what they read.
func TestMarshal(t *testing.T) {
	type doc struct {
		P  configs.Prefix    `yaml:"p"`
		R  configs.PortRange `yaml:"r"`
		B1 configs.ByteSize  `yaml:"b1"`
		B2 configs.ByteSize  `yaml:"b2"`
	}
	in := doc{configs.Prefix{}, configs.PortRange{Min: 1000, Max: 2000}, 64 * configs.KiB, 1000}
	in.P, _ = configs.ParsePrefix("2001:db8::/48")
	out, err := yaml.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	want := "p: 2001:db8::/48\nr: 1000-2000\nb1: 64KiB\nb2: 1000\n"
	if string(out) != want {
		t.Errorf("marshalled\n%s\nwant\n%s", out, want)
	}
	var back doc
	if err := yaml.Unmarshal(out, &back); err != nil || back != in {
		t.Errorf("read back %+v, %v; want %+v", back, err, in)
	}
}

// TestUnmarshalCollects checks that the custom types report a bad value as
// a *yaml.TypeError, so that yaml.v3 carries on and reports every one.
func TestUnmarshalCollects(t *testing.T) {
	var v struct {
		P configs.Prefix    `yaml:"p"`
		R configs.PortRange `yaml:"r"`
		B configs.ByteSize  `yaml:"b"`
	}
	err := yaml.Unmarshal([]byte("p: nonsense\nr: [1]\nb: 1KB\n"), &v)
	te, ok := errors.AsType[*yaml.TypeError](err)
	if !ok {
		t.Fatalf("got %v, want a *yaml.TypeError", err)
	}
	want := []string{
		`line 1: "nonsense" is not an IP address or CIDR network`,
		`line 2: must be a single value, not a list`,
		`line 3: "1KB" is not a size like 65536, 64KiB or 1MiB`,
	}
	if strings.Join(te.Errors, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors\n%s\nwant\n%s", strings.Join(te.Errors, "\n"), strings.Join(want, "\n"))
	}
}

// TestPrefixJSON checks that the JSON API accepts the same forms as the file.
func TestPrefixJSON(t *testing.T) {
	var ps []configs.Prefix
	if err := json.Unmarshal([]byte(`["192.0.2.7", "::ffff:10.0.0.0/104"]`), &ps); err != nil {
		t.Fatal(err)
	}
	if got := prefixes(ps); got != "192.0.2.7/32 10.0.0.0/8" {
		t.Errorf("got %s", got)
	}
	if out, _ := json.Marshal(ps); string(out) != `["192.0.2.7/32","10.0.0.0/8"]` {
		t.Errorf("marshalled %s", out)
	}
	if err := json.Unmarshal([]byte(`["bad"]`), &ps); err == nil {
		t.Error("bad prefix accepted")
	}
}
