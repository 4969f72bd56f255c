package configs

// Routing names (service names, the Host of a request, the domain of a SIP
// From URI or of an LDAP bind name, an H.323 gatekeeper ID) compare with
// the case of ASCII letters ignored, and nothing else: a service name is
// ASCII (validName), and Unicode's case rules would make a client's name
// that is not the service's bytes match it. "\u212Aiosk.example.com"
// (KELVIN SIGN) lowers to "kiosk.example.com" with strings.ToLower, "ſip"
// (LONG S) folds to "sip" with strings.EqualFold, and "İ" lowers to "i":
// gatehouse would route and judge the request as that service while the
// target reads other bytes (its default virtual host, another domain, an
// unknown user).

// FoldName lowers the ASCII letters of s and keeps every other byte.
func FoldName(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; 'A' <= c && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// EqualName reports whether a and b are the same name with the case of
// ASCII letters ignored.
func EqualName(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
