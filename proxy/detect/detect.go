// Package detect tells the protocols that share listen.any apart by their
// first bytes. Every rule is anchored at the first byte and answers yes,
// no, or "need more bytes"; none allocates, so a connection costs its
// classification nothing but a look at the bytes it sent.
//
// The rules, in the order a reader checks them:
//
//   - TLS: a handshake record (0x16, version 3.x) that starts a ClientHello.
//   - STUN/TURN over TCP (RFC 8489 §6): a first byte of 0x00-0x03 (the two
//     top bits zero, and a method up to 0x0FF, which holds every method
//     IANA has registered), a length that is a multiple of four, and the
//     magic cookie 0x2112A442.
//   - H.225.0: a TPKT header (RFC 1006: version 3, reserved 0, length of
//     at least a Q.931 header) followed by the Q.931 protocol
//     discriminator 0x08.
//   - LDAP: a BER SEQUENCE (definite length, short or long form of at most
//     four bytes) whose first element is the INTEGER messageID.
//   - HTTP and SIP: a request line, method SP request-target SP version
//     CRLF; the version token decides ("HTTP/1.0", "HTTP/1.1" or the
//     HTTP/2 preface's "HTTP/2.0" against "SIP/2.0"), as methods such as
//     OPTIONS start both.
//
// The first bytes tell the rules apart (TLS 0x16, STUN 0x00-0x03, TPKT
// 0x03 0x00, LDAP 0x30, HTTP and SIP a letter); TPKT and a STUN message
// type of 0x03 0x00 differ in the fifth byte (Q.931's 0x08 against the
// cookie's 0x21), so no two rules ever both say yes. STUN's first byte is
// held to the registered methods' range for that: with only its top bits
// checked, an LDAP message whose messageID is 0x2112A442 was STUN too.
package detect

// Protocol is what a connection's first bytes are.
type Protocol uint8

const (
	Unknown Protocol = iota
	TLS
	HTTP
	SIP
	LDAP
	H323
	STUN
)

var names = [...]string{"unknown", "tls", "http", "sip", "ldap", "h323", "stun"}

func (p Protocol) String() string {
	if int(p) < len(names) {
		return names[p]
	}
	return "unknown"
}

// Result is a rule's answer.
type Result uint8

const (
	No       Result = iota // these bytes are not the protocol
	NeedMore               // a prefix of the protocol: read more
	Yes                    // the protocol
)

// MaxRequestLine bounds how far Detect looks for the end of an HTTP or SIP
// request line; a longer one is refused (both protocols' request lines fit
// many times over: a request-target is a URI, not a body).
const MaxRequestLine = 8192

// Detect classifies first, the bytes a connection sent so far. It returns
// Unknown with NeedMore while a rule could still match, and Unknown with No
// once none can.
func Detect(first []byte) (Protocol, Result) {
	more := false
	for _, r := range rules {
		switch r.match(first) {
		case Yes:
			return r.p, Yes
		case NeedMore:
			more = true
		}
	}
	if more {
		return Unknown, NeedMore
	}
	return Unknown, No
}

// DetectInner classifies the first bytes inside TLS: the same rules but
// TLS itself (TLS inside TLS is refused).
func DetectInner(first []byte) (Protocol, Result) {
	p, r := Detect(first)
	if p == TLS {
		return Unknown, No
	}
	return p, r
}

var rules = [...]struct {
	p     Protocol
	match func([]byte) Result
}{
	{TLS, isTLS}, {STUN, isSTUN}, {H323, isTPKT}, {LDAP, isLDAP}, {HTTP, isHTTP}, {SIP, isSIP},
}

// prefix answers for a fixed pattern the first bytes must start with.
func prefix(b []byte, want string) Result {
	n := min(len(b), len(want))
	if string(b[:n]) != want[:n] { // compiled without a conversion
		return No
	}
	if n < len(want) {
		return NeedMore
	}
	return Yes
}

// isTLS: ContentType handshake (22), ProtocolVersion 3.0-3.4 (RFC 8446 §5.1:
// the record version of a ClientHello may be 0x0301 for compatibility),
// a non-zero length, and HandshakeType client_hello (1).
func isTLS(b []byte) Result {
	if r := prefix(b, "\x16\x03"); r != Yes {
		return r
	}
	if len(b) < 6 {
		if len(b) >= 3 && b[2] > 0x04 {
			return No
		}
		return NeedMore
	}
	if b[2] > 0x04 || (b[3] == 0 && b[4] == 0) || b[5] != 0x01 {
		return No
	}
	return Yes
}

// isSTUN: RFC 8489 §5/§6 header: a message type whose first byte is 0x00-0x03
// (0b00 top bits; methods 0x000-0x0FF), length a multiple of 4, the magic
// cookie.
func isSTUN(b []byte) Result {
	if len(b) == 0 {
		return NeedMore
	}
	if b[0] > 0x03 {
		return No
	}
	if len(b) >= 4 && b[3]&0x03 != 0 {
		return No
	}
	if len(b) < 4 {
		return NeedMore
	}
	return prefix(b[4:], "\x21\x12\xA4\x42")
}

// isTPKT: version 3, reserved 0, a length covering TPKT (4) and at least
// the Q.931 protocol discriminator, call reference length and message
// type (3), then the discriminator 0x08 (Q.931).
func isTPKT(b []byte) Result {
	if r := prefix(b, "\x03\x00"); r != Yes {
		return r
	}
	if len(b) < 5 {
		return NeedMore
	}
	if int(b[2])<<8|int(b[3]) < 7 || b[4] != 0x08 {
		return No
	}
	return Yes
}

// isLDAP: LDAPMessage ::= SEQUENCE { messageID INTEGER, ... } in BER with
// a definite length (RFC 4511 §5.1 forbids the indefinite form).
func isLDAP(b []byte) Result {
	if len(b) == 0 {
		return NeedMore
	}
	if b[0] != 0x30 {
		return No
	}
	if len(b) < 2 {
		return NeedMore
	}
	i := 2
	switch l := b[1]; {
	case l == 0x80 || l > 0x84: // indefinite, or longer than a message can be
		return No
	case l > 0x80:
		i += int(l & 0x7f)
	case l < 5: // messageID (3 bytes at least) and an operation (2)
		return No
	}
	if len(b) <= i {
		return NeedMore
	}
	if b[i] != 0x02 {
		return No
	}
	return Yes
}

func isHTTP(b []byte) Result { return requestLine(b, true) }
func isSIP(b []byte) Result  { return requestLine(b, false) }

// requestLine answers whether b starts with an HTTP (http) or SIP request
// line: an upper-case token method (RFC 9110 and RFC 3261 methods are
// tokens; every registered one is upper case), SP, a request-target
// without controls or spaces, SP, the version, CRLF.
func requestLine(b []byte, http bool) Result {
	i := 0
	for i < len(b) && (b[i] >= 'A' && b[i] <= 'Z' || b[i] == '-' || b[i] == '_') {
		i++
	}
	switch {
	case i == len(b):
		if i > 32 { // longer than any method
			return No
		}
		return NeedMore
	case i == 0 || b[i] != ' ':
		return No
	}
	i++
	j := i
	for j < len(b) && b[j] > ' ' && b[j] < 0x7f {
		j++
	}
	switch {
	case j == len(b):
		if j >= MaxRequestLine {
			return No
		}
		return NeedMore
	case j == i || b[j] != ' ':
		return No
	}
	v := b[j+1:]
	if http {
		for _, want := range [...]string{"HTTP/1.1\r\n", "HTTP/1.0\r\n", "HTTP/2.0\r\n"} {
			if r := prefix(v, want); r != No {
				return r
			}
		}
		return No
	}
	return prefix(v, "SIP/2.0\r\n")
}
