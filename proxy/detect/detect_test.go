package detect

import (
	"os"
	"path/filepath"
	"testing"

	ber "github.com/go-asn1-ber/asn1-ber"
)

// fixtures are first packets real clients sent (see TestRecordFixtures).
var fixtures = []struct {
	file string
	want Protocol
}{
	{"go-clienthello.bin", TLS},      // crypto/tls, ALPN h2 and http/1.1, SNI
	{"openssl-clienthello.bin", TLS}, // openssl s_client 3.0
	{"curl-clienthello.bin", TLS},    // curl 7.88 (OpenSSL)
	{"curl-http.txt", HTTP},          // curl's GET
	{"http-options.txt", HTTP},       // OPTIONS * HTTP/1.1: the method SIP has too
	{"sip-register.txt", SIP},        // a phone's REGISTER
	{"sip-options.txt", SIP},         // OPTIONS … SIP/2.0: decided by the version
	{"go-ldap-bind.ber", LDAP},       // go-ldap's simple bind
	{"ldapwhoami-bind.ber", LDAP},    // ldapwhoami's bind (protocols/ldap's fixture)
	{"h323-rrq.tpkt", H323},          // a tunnelled RRQ in a Q.931 Facility (protocols/h323's fixture)
	{"pion-stun-binding.bin", STUN},  // pion's Binding request with FINGERPRINT
}

func load(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Each fixture is its protocol, and every prefix of it is either "need
// more" or that protocol: never another one, never a refusal.
func TestFixtures(t *testing.T) {
	for _, f := range fixtures {
		b := load(t, f.file)
		if p, r := Detect(b); p != f.want || r != Yes {
			t.Errorf("%s: %v %v, want %v", f.file, p, r, f.want)
		}
		decided := false
		for n := 0; n <= len(b); n++ {
			p, r := Detect(b[:n])
			switch {
			case r == Yes && p != f.want, r == No:
				t.Fatalf("%s: first %d bytes: %v %v", f.file, n, p, r)
			case r == Yes:
				decided = true
			case decided:
				t.Fatalf("%s: first %d bytes undecided after a decision", f.file, n)
			}
		}
		inner, r := DetectInner(b)
		if want := f.want; want == TLS {
			if r != No {
				t.Errorf("%s inside TLS: %v %v, want a refusal", f.file, inner, r)
			}
		} else if inner != want || r != Yes {
			t.Errorf("%s inside TLS: %v %v", f.file, inner, r)
		}
	}
}

// The first record of a ClientHello split into 1-byte records is still TLS
// (crypto/tls reassembles; the deadline bounds how long that may take).
func TestClientHelloInOneByteRecords(t *testing.T) {
	hello := load(t, "go-clienthello.bin")
	split := []byte{0x16, 0x03, 0x01, 0x00, 0x01, hello[5]}
	if p, r := Detect(split); p != TLS || r != Yes {
		t.Fatalf("%v %v", p, r)
	}
}

// An LDAP bind whose messageID is the STUN cookie's value (0x2112A442, a
// valid messageID) starts 30 L 02 04 21 12 A4 42: a STUN header but for
// its first byte, which no registered STUN method has. It is LDAP (found
// by FuzzDetect: the rules' order had decided, and the listener sent such a
// bind to the TURN server).
func TestLDAPWithTheCookieAsMessageID(t *testing.T) {
	msg := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "LDAP Request")
	msg.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, int64(0x2112A442), "MessageID"))
	bind := ber.Encode(ber.ClassApplication, ber.TypeConstructed, 0, nil, "Bind Request")
	bind.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, int64(3), "Version"))
	bind.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "cn=alice,dc=example,dc=com", "Name"))
	bind.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, "secret", "Password"))
	msg.AppendChild(bind)
	b := msg.Bytes()
	if string(b[2:8]) != "\x02\x04\x21\x12\xa4\x42" {
		t.Fatalf("encoded as % x", b[:8])
	}
	if p, r := Detect(b); p != LDAP || r != Yes {
		t.Errorf("%v %v, want ldap", p, r)
	}
	// A STUN Binding request is still STUN, and so is the highest
	// method the rule takes (0x0FF, a success response: type 0x03EF).
	for _, h := range []string{"\x00\x01\x00\x00\x21\x12\xa4\x42", "\x03\xef\x00\x00\x21\x12\xa4\x42"} {
		if p, r := Detect([]byte(h)); p != STUN || r != Yes {
			t.Errorf("% x: %v %v, want stun", h, p, r)
		}
	}
}

func TestRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    string
	}{
		{"SSH banner", "SSH-2.0-OpenSSH_9.2\r\n"},
		{"lower-case method", "get / HTTP/1.1\r\n"},
		{"HTTP/0.9", "GET /\r\n"},
		{"HTTP/1.2", "GET / HTTP/1.2\r\n"},
		{"SIP/3.0", "REGISTER sip:example.com SIP/3.0\r\n"},
		{"two spaces", "GET  / HTTP/1.1\r\n"},
		{"bare LF", "GET / HTTP/1.1\n"},
		{"control in target", "GET /\x01 HTTP/1.1\r\n"},
		{"a response", "SIP/2.0 200 OK\r\n"},
		{"TLS alert record", "\x15\x03\x03\x00\x02\x02\x28"},
		{"TLS record version 4.0", "\x16\x04\x00\x00\x10\x01\x00\x00"},
		{"TLS server hello", "\x16\x03\x03\x00\x31\x02"},
		{"TLS empty record", "\x16\x03\x01\x00\x00\x01"},
		{"STUN without cookie (RFC 3489)", "\x00\x01\x00\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10"},
		{"STUN odd length", "\x00\x01\x00\x02\x21\x12\xa4\x42"},
		{"STUN method 0x100", "\x04\x00\x00\x00\x21\x12\xa4\x42"},
		{"TPKT without Q.931", "\x03\x00\x00\x10\x02"},
		{"TPKT too short", "\x03\x00\x00\x04\x08"},
		{"BER indefinite length", "\x30\x80\x02\x01\x01"},
		{"BER sequence of a string", "\x30\x0c\x04\x01\x01"},
		{"BER length of 5 bytes", "\x30\x85\x00\x00\x00\x00\x10\x02"},
		{"CRLF keep-alive", "\r\n\r\n"},
		{"NUL", "\x00"[:0] + "\xff"},
	} {
		if p, r := Detect([]byte(tc.b)); r != No {
			t.Errorf("%s: %v %v, want a refusal", tc.name, p, r)
		}
	}
	long := make([]byte, MaxRequestLine+10)
	copy(long, "GET /")
	for i := 5; i < len(long); i++ {
		long[i] = 'a'
	}
	if _, r := Detect(long); r != No {
		t.Errorf("a request line longer than %d bytes: %v", MaxRequestLine, r)
	}
	if _, r := Detect(nil); r != NeedMore {
		t.Errorf("nothing yet: %v", r)
	}
}

func FuzzDetect(f *testing.F) {
	for _, fx := range fixtures {
		f.Add(load(f, fx.file))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, r := Detect(b)
		if (r == Yes) != (p != Unknown) {
			t.Fatalf("%v %v", p, r)
		}
		// A decision stands: more bytes never change it.
		if r == Yes {
			if q, s := Detect(append(b[:len(b):len(b)], 'x')); q != p || s != Yes {
				t.Fatalf("%v, then %v %v with one more byte", p, q, s)
			}
		}
		// Only one rule says yes.
		yes := 0
		for _, rl := range rules {
			if rl.match(b) == Yes {
				yes++
			}
		}
		if yes > 1 {
			t.Fatalf("%d rules match %q", yes, b)
		}
	})
}

// BenchmarkDetect reports the cost of classifying each protocol's first
// packet (b.ReportAllocs: it must be 0 allocs/op).
func BenchmarkDetect(b *testing.B) {
	for _, fx := range []struct{ name, file string }{
		{"tls", "go-clienthello.bin"}, {"http", "curl-http.txt"}, {"sip", "sip-register.txt"},
		{"sip-options", "sip-options.txt"}, {"ldap", "go-ldap-bind.ber"}, {"h323", "h323-rrq.tpkt"},
		{"stun", "pion-stun-binding.bin"},
	} {
		first := load(b, fx.file)
		b.Run(fx.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Detect(first)
			}
		})
	}
}

// Detection never allocates (checked here, where a benchmark is not run).
func TestDetectAllocs(t *testing.T) {
	for _, fx := range fixtures {
		b := load(t, fx.file)
		if n := testing.AllocsPerRun(100, func() { Detect(b) }); n != 0 {
			t.Errorf("%s: %v allocations", fx.file, n)
		}
	}
}
