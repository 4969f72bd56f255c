package sip

import (
	"crypto/x509"
	"strings"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// check_certificate lets a PBX trust a request that arrives on its TLS port:
// gatehouse sends it there only when the client certificate names the
// address the request acts for (identity.record). A certificate names
// user@host by any of
//
//   - its subject CN, as the bare user ("alice") or the full address
//     ("alice@example.com");
//   - a subjectAltName URI sip:alice@example.com or sips:alice@example.com
//     (URI parameters after ";" are ignored);
//   - a subjectAltName e-mail address alice@example.com.
//
// The user is compared exactly, as SIP compares it (RFC 3261 §19.1.4: the
// user part is case-sensitive) and without undoing %-escapes, so an escaped
// spelling of another user never matches; the host case-insensitively. A
// bare CN names the user in the connection's service domain only, since
// the request's host is that domain (identify checks From and To agree).

// verifiedLeaf returns the client certificate when it chains to
// tls.client_cas: the proxy sets VerifiedCN only then.
func verifiedLeaf(info *proxy.ConnInfo) *x509.Certificate {
	if info.VerifiedCN == "" || info.TLS == nil || len(info.TLS.PeerCertificates) == 0 {
		return nil
	}
	return info.TLS.PeerCertificates[0]
}

// certifies reports whether cert names the address a.
func certifies(cert *x509.Certificate, a uri) bool {
	if a.user == "" {
		return false
	}
	if namesUser(cert.Subject.CommonName, a, true) {
		return true
	}
	for _, u := range cert.URIs {
		var addr string
		switch strings.ToLower(u.Scheme) {
		case "sip", "sips":
			addr = u.Opaque
		default:
			continue
		}
		addr, _, _ = strings.Cut(addr, ";")
		if namesUser(addr, a, false) {
			return true
		}
	}
	for _, e := range cert.EmailAddresses {
		if namesUser(e, a, false) {
			return true
		}
	}
	return false
}

// namesUser reports whether name, user@host (or the bare user when bare is
// allowed), is the address a.
func namesUser(name string, a uri, bare bool) bool {
	at := strings.LastIndexByte(name, '@')
	if at < 0 {
		return bare && name == a.user
	}
	return name[:at] == a.user && configs.EqualName(name[at+1:], a.host)
}
