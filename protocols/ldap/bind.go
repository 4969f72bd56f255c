package ldap

import (
	"strings"

	ber "github.com/go-asn1-ber/asn1-ber"
	goldap "github.com/go-ldap/ldap/v3"

	"github.com/gatehouse-pbx/gatehouse/configs"
)

// Tags of the AuthenticationChoice of a BindRequest (RFC 4511 4.2); 1 and 2
// are reserved.
const (
	authSimple = 0
	authSASL   = 3
)

// bindKey returns the routing key of BindRequest m, or the reason it is
// refused. Every bind on a connection, not only the first, goes through it.
func bindKey(m *message) (string, error) {
	f := m.op.Children
	if m.op.TagType != ber.TypeConstructed || len(f) < 3 ||
		!universal(f[0], ber.TagInteger) || !universal(f[1], ber.TagOctetString) || f[2].ClassType != ber.ClassContext {
		return "", errBadBind
	}
	name, auth := f[1].Data.String(), f[2]
	switch {
	case auth.Tag == authSimple && auth.TagType == ber.TypePrimitive:
		if name == "" {
			return "", errAnonymous
		}
		if auth.Data.Len() == 0 { // a name without password binds anonymously too (RFC 4513 5.1.2)
			return "", errUnauthBind
		}
	case auth.Tag == authSASL && auth.TagType == ber.TypeConstructed:
		if name == "" { // the usual case: the identity hides in the mechanism's credentials
			return "", errSASLNoName
		}
	default:
		return "", errBindMethod
	}
	return routingKey(name)
}

func universal(p *ber.Packet, tag ber.Tag) bool {
	return p.ClassType == ber.ClassUniversal && p.TagType == ber.TypePrimitive && p.Tag == tag
}

// routingKey returns the service name a bind name is for: the domain of a
// down-level logon name "domain\user", or the DC components of a DN joined
// with dots, in order ("CN=alice,DC=example,DC=com" is for "example.com").
// Case is kept; service names are matched case-insensitively.
func routingKey(name string) (string, error) {
	// A DN's first "=" comes before any backslash, since only values are
	// escaped; "example.com\alice" has none before its backslash.
	if i := strings.IndexByte(name, '\\'); i >= 0 && !strings.Contains(name[:i], "=") {
		if i == 0 || i == len(name)-1 {
			return "", errNoDomain
		}
		return name[:i], nil
	}
	dn, err := goldap.ParseDN(name)
	if err != nil {
		return "", errBadDN
	}
	var dcs []string
	for _, rdn := range dn.RDNs {
		for _, a := range rdn.Attributes {
			if !isDC(a.Type) {
				continue
			}
			if a.Value == "" {
				return "", errNoDomain
			}
			dcs = append(dcs, a.Value)
		}
	}
	if len(dcs) == 0 {
		return "", errNoDomain
	}
	return strings.Join(dcs, "."), nil
}

// isDC reports whether an attribute type names domainComponent (RFC 4519
// 2.4) by any of its names.
func isDC(t string) bool {
	return configs.EqualName(t, "dc") || configs.EqualName(t, "domainComponent") || t == "0.9.2342.19200300.100.1.25"
}
