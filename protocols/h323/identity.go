package h323

import (
	"crypto/x509"
	"strings"

	"github.com/gatehouse-pbx/gatehouse/configs"
)

// check_certificate lets a PBX trust a registration that arrives on its TLS
// port, and a PBX registers every alias of an RRQ. So a certificate vouches
// for a registration only when it names each of its aliases: the h323-IDs
// and url-IDs and email-IDs (the user's names) and the dialledDigits (its
// numbers) alike. An alias of a kind gatehouse does not read (transportID,
// partyNumber, ...) cannot be checked, and leaves the registration
// uncertified. A certificate names an alias by
//
//   - its subject CN;
//   - a subjectAltName URI sip:, sips: or h323:user@domain (parameters and
//     port ignored);
//   - a subjectAltName e-mail address user@domain;
//
// where a name with a domain matches an alias with the same user and
// domain, or the bare user when the domain is the service's, and a bare
// name matches the bare alias, or the alias in the service's domain.
// H.323 aliases are compared case-insensitively, as gatekeepers do.

// address is an alias or a certificate name split into user and domain;
// domain is "" for a bare name.
type address struct{ user, domain string }

// splitAddress splits user@domain, cutting a URL's scheme, port and
// parameters (RFC 3508).
func splitAddress(s string, url bool) address {
	if url {
		if i := strings.IndexByte(s, ':'); i >= 0 {
			s = s[i+1:]
		}
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return address{user: s}
	}
	a := address{user: s[:at], domain: s[at+1:]}
	if url {
		if end := strings.IndexAny(a.domain, ":;?"); end >= 0 {
			a.domain = a.domain[:end]
		}
	}
	return a
}

// aliasAddress is the address an alias names.
func aliasAddress(a alias) address {
	return splitAddress(a.String(), a.kind == aliasURL)
}

// oneUser returns the user that the names among aliases (h323-ID, url-ID,
// email-ID) name, "" when there are none, and refuses aliases that name
// two: a registration by one endpoint is for one user, however many
// numbers it has.
func oneUser(aliases []alias) (string, error) {
	var user string
	for _, a := range aliases {
		if a.kind == aliasDigits {
			continue
		}
		u := aliasAddress(a).user
		switch {
		case user == "":
			user = u
		case !configs.EqualName(u, user):
			return "", errManyUsers
		}
	}
	return user, nil
}

// certifiesAll reports whether cert names every alias of registration m
// for service (domain[/registration-location]).
func certifiesAll(cert *x509.Certificate, m *rasInfo, service string) bool {
	if m.aliasCount == 0 || m.aliasCount != len(m.aliases) {
		return false // none, or some gatehouse did not read or keep
	}
	domain, _, _ := strings.Cut(service, "/")
	names := certNames(cert)
	for _, a := range m.aliases {
		addr := aliasAddress(a)
		if addr.user == "" || !namesAny(names, addr, domain) {
			return false
		}
	}
	return true
}

// certNames are the names a certificate gives its holder.
func certNames(cert *x509.Certificate) []address {
	var names []address
	if cert.Subject.CommonName != "" {
		names = append(names, splitAddress(cert.Subject.CommonName, false))
	}
	for _, u := range cert.URIs {
		switch strings.ToLower(u.Scheme) {
		case "sip", "sips", "h323":
			names = append(names, splitAddress(u.Scheme+":"+u.Opaque, true))
		}
	}
	for _, e := range cert.EmailAddresses {
		names = append(names, splitAddress(e, false))
	}
	return names
}

// namesAny reports whether one of names is the alias address a, with
// domain the service's.
func namesAny(names []address, a address, domain string) bool {
	for _, n := range names {
		if !configs.EqualName(n.user, a.user) {
			continue
		}
		nd, ad := n.domain, a.domain
		if nd == "" {
			nd = domain
		}
		if ad == "" {
			ad = domain
		}
		if configs.EqualName(nd, ad) {
			return true
		}
	}
	return false
}
