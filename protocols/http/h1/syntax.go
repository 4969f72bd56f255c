package h1

// Character classes of RFC 9110 section 5 and RFC 3986, as lookup tables.

var (
	tchar      [256]bool // token characters: field names, methods, codings
	fieldVChar [256]bool // VCHAR and obs-text, plus SP and HTAB inside a value
	targetChar [256]bool // what a request target may hold (see below)
	hostChar   [256]bool // reg-name characters of a Host: unreserved and sub-delims
	hexVal     [256]int8 // value of a hex digit, -1 for anything else
)

func init() {
	for c := 0; c < 256; c++ {
		hexVal[c] = -1
	}
	for c := '0'; c <= '9'; c++ {
		hexVal[c] = int8(c - '0')
	}
	for c := 'a'; c <= 'f'; c++ {
		hexVal[c] = int8(c - 'a' + 10)
		hexVal[c-'a'+'A'] = int8(c - 'a' + 10)
	}
	for c := 0x21; c < 0x7f; c++ {
		fieldVChar[c] = true
	}
	for c := 0x80; c < 0x100; c++ {
		fieldVChar[c] = true // obs-text: field values may carry it (file names)
	}
	fieldVChar[' '], fieldVChar['\t'] = true, true
	for _, c := range "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" {
		tchar[c] = true
	}
	// A request target is visible ASCII, except what no client sends
	// unencoded (browsers percent-encode them; RFC 3986 has no place for
	// them): '"', '<', '>' and the fragment's '#'. Characters that some
	// servers read specially ('\\', ';') are the allowed-URL rule's matter
	// (protocols/http), not the parser's.
	for c := 0x21; c < 0x7f; c++ {
		targetChar[c] = true
	}
	for _, c := range "\"<>#" {
		targetChar[c] = false
	}
	for _, c := range "-._~!$&'()*+,;=0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" {
		hostChar[c] = true
	}
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tchar[s[i]] {
			return false
		}
	}
	return true
}

// trimOWS removes optional whitespace (SP, HTAB) from both ends.
func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// equalFold compares ASCII case-insensitively (field names, codings).
func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if x|0x20 != y|0x20 || x|0x20 < 'a' || x|0x20 > 'z' {
			return false
		}
	}
	return true
}

// validPort reports whether s is a port: at most five digits (empty is
// allowed by RFC 3986 and means the default).
func validPort(s string) bool {
	if len(s) > 5 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// ValidHost reports whether h is a Host field value or an authority
// without user information: uri-host [":" port], where uri-host is a
// bracketed IPv6 literal or a reg-name of unreserved and sub-delims
// characters (no percent-encoding, no '@': neither has any use in naming a
// service here, and both are read differently by different servers).
func ValidHost(h string) bool {
	if h == "" {
		return false
	}
	if h[0] == '[' {
		end := -1
		for i := 1; i < len(h); i++ {
			c := h[i]
			if c == ']' {
				end = i
				break
			}
			if hexVal[c] < 0 && c != ':' && c != '.' {
				return false
			}
		}
		if end < 2 {
			return false
		}
		rest := h[end+1:]
		if rest == "" {
			return true
		}
		return rest[0] == ':' && validPort(rest[1:])
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if c == ':' {
			return i > 0 && validPort(h[i+1:])
		}
		if !hostChar[c] {
			return false
		}
	}
	return true
}
