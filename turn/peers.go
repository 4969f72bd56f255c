package turn

import (
	"net/netip"

	"github.com/gatehouse-pbx/gatehouse/configs"
)

// neverPeers are denied whatever deny_peers says: no real peer has these
// addresses, and Linux delivers 0.0.0.0 and :: to loopback (coturn
// CVE-2020-26262 relayed into the host that way).
var neverPeers = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("::/128"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("255.255.255.255/32"),
	netip.MustParsePrefix("ff00::/8"),
}

// IPv6 prefixes whose addresses carry an IPv4 address that a translator (or
// the kernel, for the deprecated IPv4-compatible form) may deliver to.
var (
	nat64 = netip.MustParsePrefix("64:ff9b::/96")
	sixTo = netip.MustParsePrefix("2002::/16")
	v4cmp = netip.MustParsePrefix("::/96")
)

// denyList is the set of networks relayed media may never reach. Prefixes
// are stored unmapped, so one IPv4 form is compared against one IPv4 form.
type denyList []netip.Prefix

// newDenyList builds the list from configured prefixes plus single addresses.
func newDenyList(prefixes []configs.Prefix, addrs ...netip.Addr) denyList {
	d := make(denyList, 0, len(neverPeers)+len(prefixes)+len(addrs))
	d = append(d, neverPeers...)
	for _, p := range prefixes {
		d = append(d, unmapPrefix(p.Prefix))
	}
	for _, a := range addrs {
		a = a.WithZone("").Unmap()
		d = append(d, netip.PrefixFrom(a, a.BitLen()))
	}
	return d
}

// denies reports whether ip, or the IPv4 address it embeds, is denied.
func (d denyList) denies(ip netip.Addr) bool {
	if !ip.IsValid() {
		return true
	}
	ip = ip.WithZone("").Unmap()
	v4, embeds := embeddedIPv4(ip)
	for _, p := range d {
		if p.Contains(ip) || embeds && p.Contains(v4) {
			return true
		}
	}
	return false
}

// embeddedIPv4 returns the IPv4 address inside an IPv4-compatible, NAT64
// well-known-prefix or 6to4 IPv6 address.
func embeddedIPv4(ip netip.Addr) (netip.Addr, bool) {
	if !ip.Is6() {
		return netip.Addr{}, false
	}
	b := ip.As16()
	switch {
	case v4cmp.Contains(ip), nat64.Contains(ip):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case sixTo.Contains(ip):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	return netip.Addr{}, false
}

// unmapPrefix turns ::ffff:a.b.c.d/n (n >= 96) into a.b.c.d/(n-96).
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96).Masked()
	}
	return netip.PrefixFrom(p.Addr().WithZone(""), p.Bits()).Masked()
}
