package configs

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// ParsePrefix parses a network written as a CIDR prefix or as a single
// address (a /32 or /128). Host bits are cleared, and IPv4-mapped IPv6 forms
// are unmapped so that ::ffff:192.0.2.0/120 means 192.0.2.0/24: gatehouse
// compares client addresses in their unmapped form.
func ParsePrefix(s string) (Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return Prefix{}, fmt.Errorf("%q is not an IP address or CIDR network", s)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return Prefix{}, fmt.Errorf("%q is not an IP address or CIDR network", s)
		}
		if a.Zone() != "" {
			return Prefix{}, fmt.Errorf("%q: an address with a zone cannot name a network", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return Prefix{p.Masked()}, nil
}

// UnmarshalText accepts what ParsePrefix accepts, so the JSON API takes the
// same forms as the file.
func (p *Prefix) UnmarshalText(text []byte) error {
	v, err := ParsePrefix(string(text))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (p *Prefix) UnmarshalYAML(n *yaml.Node) error {
	return unmarshalScalar(n, p, ParsePrefix)
}

// MarshalYAML writes the CIDR form.
func (p Prefix) MarshalYAML() (any, error) { return p.String(), nil }

// ParsePortRange parses "low-high", or a single port meaning a range of one.
// Whether the range is usable (low >= 1, low <= high) is left to validation,
// which can say so with the key's line.
func ParsePortRange(s string) (PortRange, error) {
	lo, hi, found := strings.Cut(s, "-")
	if !found {
		hi = lo
	}
	low, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	high, err2 := strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
	if err1 != nil || err2 != nil {
		return PortRange{}, fmt.Errorf("%q is not a port range like 49152-65535", s)
	}
	return PortRange{uint16(low), uint16(high)}, nil
}

// String returns the "low-high" form.
func (r PortRange) String() string { return fmt.Sprintf("%d-%d", r.Min, r.Max) }

// UnmarshalYAML implements yaml.Unmarshaler.
func (r *PortRange) UnmarshalYAML(n *yaml.Node) error {
	return unmarshalScalar(n, r, ParsePortRange)
}

// MarshalYAML writes the "low-high" form.
func (r PortRange) MarshalYAML() (any, error) { return r.String(), nil }

// Byte size units accepted after a number. Only binary units: "KB" is
// ambiguous (1000 or 1024), so it is refused rather than guessed.
const (
	KiB ByteSize = 1 << 10
	MiB ByteSize = 1 << 20
	GiB ByteSize = 1 << 30
)

var byteUnits = []struct {
	suffix string
	size   ByteSize
}{{"GiB", GiB}, {"MiB", MiB}, {"KiB", KiB}, {"B", 1}, {"", 1}}

// ParseByteSize parses a whole number of bytes, optionally followed by
// B, KiB, MiB or GiB ("65536", "64KiB", "64 KiB").
func ParseByteSize(s string) (ByteSize, error) {
	bad := fmt.Errorf("%q is not a size like 65536, 64KiB or 1MiB", s)
	i := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	if i < 0 {
		i = len(s)
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil {
		return 0, bad
	}
	unit := strings.TrimSpace(s[i:])
	for _, u := range byteUnits {
		if unit == u.suffix {
			if n > math.MaxInt/int64(u.size) {
				return 0, fmt.Errorf("%q is too large", s)
			}
			return ByteSize(n) * u.size, nil
		}
	}
	return 0, bad
}

// String uses the largest unit that divides the size exactly.
func (b ByteSize) String() string {
	for _, u := range byteUnits[:3] {
		if b != 0 && b%u.size == 0 {
			return fmt.Sprintf("%d%s", b/u.size, u.suffix)
		}
	}
	return strconv.Itoa(int(b))
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	return unmarshalScalar(n, b, ParseByteSize)
}

// MarshalYAML writes a plain number when no unit divides the size.
func (b ByteSize) MarshalYAML() (any, error) {
	if s := b.String(); strings.HasSuffix(s, "iB") {
		return s, nil
	}
	return int(b), nil
}

// ParsePercent parses a whole percentage written with its sign ("25%").
// The sign is required: a bare 25 could be read as 25 connections. Whether
// the value is in range is left to validation.
func ParsePercent(s string) (Percent, error) {
	num, ok := strings.CutSuffix(s, "%")
	n, err := strconv.Atoi(num)
	if !ok || err != nil || num == "" || strings.Trim(num, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a percentage like 25%%", s)
	}
	return Percent(n), nil
}

// String returns the "25%" form.
func (p Percent) String() string { return strconv.Itoa(int(p)) + "%" }

// UnmarshalYAML implements yaml.Unmarshaler.
func (p *Percent) UnmarshalYAML(n *yaml.Node) error {
	return unmarshalScalar(n, p, ParsePercent)
}

// MarshalYAML writes the "25%" form.
func (p Percent) MarshalYAML() (any, error) { return p.String(), nil }

// unmarshalScalar parses a scalar node into *dst. A bad value is returned as
// a *yaml.TypeError in yaml.v3's own "line N: " form, so that yaml.v3 goes on
// and collects the other errors instead of stopping at this one.
func unmarshalScalar[T any](n *yaml.Node, dst *T, parse func(string) (T, error)) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: must be a single value, not %s", n.Line, kindName(n))}}
	}
	v, err := parse(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	*dst = v
	return nil
}
