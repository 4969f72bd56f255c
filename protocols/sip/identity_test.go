package sip

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
	"testing"

	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
	"github.com/gatehouse-pbx/gatehouse/proxy"
)

func tlsInfo(c *x509.Certificate, verifiedCN string) *proxy.ConnInfo {
	return &proxy.ConnInfo{VerifiedCN: verifiedCN, TLS: &tls.ConnectionState{PeerCertificates: []*x509.Certificate{c}}}
}

func TestCertifies(t *testing.T) {
	alice := uri{"alice", "example.com"}
	for _, tc := range []struct {
		name string
		cert *x509.Certificate
		aor  uri
		want bool
	}{
		{"bare CN", testpki.Template("alice"), alice, true},
		{"CN with the domain", testpki.Template("alice@Example.COM"), alice, true},
		{"CN with another domain", testpki.Template("alice@example.org"), alice, false},
		{"CN of another user", testpki.Template("bob"), alice, false},
		{"CN in another case", testpki.Template("Alice"), alice, false}, // SIP users are case-sensitive
		{"CN a prefix", testpki.Template("alic"), alice, false},
		{"SAN sip URI", testpki.Template("Alice's phone", "sip:alice@example.com"), alice, true},
		{"SAN sips URI with parameters", testpki.Template("phone", "sips:alice@example.com;transport=tls"), alice, true},
		{"SAN URI of another domain", testpki.Template("phone", "sip:alice@example.org"), alice, false},
		{"SAN URI without user", testpki.Template("phone", "sip:example.com"), alice, false},
		{"SAN URI of another scheme", testpki.Template("phone", "https://alice@example.com/"), alice, false},
		{"SAN e-mail", testpki.Template("phone", "alice@example.com"), alice, true},
		{"SAN e-mail of another user", testpki.Template("phone", "bob@example.com"), alice, false},
		{"one of several SANs", testpki.Template("phone", "sip:bob@example.com", "alice@example.com"), alice, true},
		{"escaped user is another spelling", testpki.Template("alice"), uri{"al%69ce", "example.com"}, false},
		{"no user", testpki.Template(""), uri{"", "example.com"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := certifies(tc.cert, tc.aor); got != tc.want {
				t.Fatalf("certifies(%v) = %v", tc.aor, got)
			}
		})
	}
}

// register is a REGISTER with the given From and To lines.
func register(from, to string, extra ...string) string {
	return "REGISTER sip:example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bK.r1\r\n" +
		from + to +
		"Call-ID: r1\r\nCSeq: 1 REGISTER\r\nMax-Forwards: 70\r\n" +
		"Contact: <sip:alice@127.0.0.1:5061;transport=tls>\r\n" +
		strings.Join(extra, "") + "Content-Length: 0\r\n\r\n"
}

const (
	fromAlice = "From: <sip:alice@example.com>;tag=a\r\n"
	toAlice   = "To: <sip:alice@example.com>\r\n"
	fromBob   = "From: <sip:bob@example.com>;tag=b\r\n"
	toBob     = "To: <sip:bob@example.com>\r\n"
)

// TestSniffCertificate checks that the identity a certificate vouches for
// is the identity the request uses: the To of a REGISTER (what a registrar
// binds), the From of anything else, each given once.
func TestSniffCertificate(t *testing.T) {
	aliceCert := testpki.Template("alice")
	for _, tc := range []struct {
		name      string
		in        string
		cert      *x509.Certificate
		certified bool
		err       error
	}{
		{"own REGISTER", register(fromAlice, toAlice), aliceCert, true, nil},
		{"own REGISTER, compact forms", register("f: <sip:alice@example.com>;tag=a\r\n", "t: sip:alice@example.com\r\n"), aliceCert, true, nil},
		{"REGISTER by SAN URI", register(fromAlice, toAlice), testpki.Template("Alice's phone", "sip:alice@example.com"), true, nil},
		{"REGISTER by SAN e-mail", register(fromAlice, toAlice), testpki.Template("Alice's phone", "alice@example.com"), true, nil},
		{"From alice, To bob", register(fromAlice, toBob), aliceCert, false, nil},
		{"From bob, To alice", register(fromBob, toAlice), aliceCert, false, nil},
		{"From bob then From alice", register(fromBob+fromAlice, toAlice), aliceCert, false, errDuplicate[hFrom]},
		{"From alice then f bob", register(fromAlice+"f: <sip:bob@example.com>;tag=b\r\n", toAlice), aliceCert, false, errDuplicate[hFrom]},
		{"To alice then t bob", register(fromAlice, toAlice+"t: <sip:bob@example.com>\r\n"), aliceCert, false, errDuplicate[hTo]},
		{"To list on one line", register(fromAlice, "To: <sip:alice@example.com>, <sip:bob@example.com>\r\n"), aliceCert, false, errDuplicate[hTo]},
		{"To in another domain", register(fromAlice, "To: <sip:alice@example.org>\r\n"), aliceCert, false, ErrToOtherService},
		{"unreadable To", register(fromAlice, "To: <sip:alice@example.com\r\n"), aliceCert, false, errUnreadable[hTo]},
		{"certificate of another user", register(fromAlice, toAlice), testpki.Template("bob"), false, nil},
		{"INVITE by its From", strings.Replace(strings.Replace(register(fromAlice, toBob), "REGISTER", "INVITE", 2),
			"sip:example.com SIP", "sip:bob@example.com SIP", 1), aliceCert, true, nil},
		{"INVITE from another user", strings.Replace(strings.Replace(register(fromBob, toAlice), "REGISTER", "INVITE", 2),
			"sip:example.com SIP", "sip:alice@example.com SIP", 1), aliceCert, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := new(Sniffer).Sniff([]byte(tc.in), tlsInfo(tc.cert, tc.cert.Subject.CommonName))
			if !errors.Is(err, tc.err) {
				t.Fatalf("Sniff: %v, want %v", err, tc.err)
			}
			if err != nil {
				if reply := new(Sniffer).RefusalReply([]byte(tc.in), proxy.AsRefusal(err)); tc.err != ErrToOtherService &&
					!bytes.HasPrefix(reply, []byte("SIP/2.0 400 ")) {
					t.Fatalf("refusal reply %q", reply)
				}
				return
			}
			if got := d.Identity == tc.cert.Subject.CommonName; got != tc.certified {
				t.Fatalf("Identity %q, certified %v, want %v", d.Identity, got, tc.certified)
			}
		})
	}
	// A certificate that did not verify vouches for nothing.
	d, err := new(Sniffer).Sniff([]byte(register(fromAlice, toAlice)), tlsInfo(aliceCert, ""))
	if err != nil || d.Identity != "" {
		t.Fatalf("unverified certificate: %+v, %v", d, err)
	}
}

// TestWatcherPinsCertifiedUser: once a certificate vouched for alice, no
// later request on the connection may act for anyone else.
func TestWatcherPinsCertifiedUser(t *testing.T) {
	first := []byte(register(fromAlice, toAlice))
	invite := func(from string) string {
		return strings.Replace(strings.Replace(register(from, toBob), "REGISTER", "INVITE", 2), "sip:example.com SIP", "sip:bob@example.com SIP", 1)
	}
	for _, tc := range []struct {
		name   string
		in     string
		status string // "" passes
		reason string
	}{
		{"own re-REGISTER", register(fromAlice, toAlice), "", ""},
		{"REGISTER for bob", register(fromAlice, toBob), "SIP/2.0 403 ", errOtherUser.Error()},
		{"REGISTER by bob", register(fromBob, toBob), "SIP/2.0 403 ", errOtherUser.Error()},
		{"own INVITE", invite(fromAlice), "", ""},
		{"INVITE as bob", invite(fromBob), "SIP/2.0 403 ", errOtherUser.Error()},
		{"two From", register(fromBob+fromAlice, toAlice), "SIP/2.0 400 ", "unreadable request (duplicate From header)"},
		{"two CSeq", register(fromAlice, toAlice, "CSeq: 2 REGISTER\r\n"), "SIP/2.0 400 ", "unreadable request (duplicate CSeq header)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, w := newWatcher(t, first, tlsInfo(testpki.Template("alice"), "alice"))
			v := w.Client([]byte(tc.in))
			if !strings.HasPrefix(string(v.Reply), tc.status) || (v.Reply == nil) != (tc.status == "") || text(v.Refusal) != tc.reason || v.Close {
				t.Fatalf("got %+v (%q)", v, v.Reply)
			}
		})
	}
	// Without a certificate the connection is bound to its service only.
	_, w := newWatcher(t, first, nil)
	if v := w.Client([]byte(register(fromBob, toBob))); v.Reply != nil || text(v.Refusal) != "" {
		t.Fatalf("uncertified: %+v", v)
	}
}

// singletonLines are, per singleton header, its long and compact line.
var singletonLines = []struct{ long, compact, value string }{
	{"From", "f", "<sip:alice@example.com>;tag=x"},
	{"To", "t", "<sip:alice@example.com>"},
	{"Call-ID", "i", "dup"},
	{"CSeq", "", "1 REGISTER"},
	{"Max-Forwards", "", "70"},
	{"Content-Length", "l", "0"},
}

// TestDuplicateHeaders repeats each singleton header, by its long and its
// compact name, in every position, in both directions: a request is
// answered 400 and counted, a target message dropped and counted.
func TestDuplicateHeaders(t *testing.T) {
	for _, h := range singletonLines {
		names := []string{h.long, strings.ToLower(h.long), strings.ToUpper(h.long)}
		if h.compact != "" {
			names = append(names, h.compact, strings.ToUpper(h.compact))
		}
		for _, name := range names {
			extra := name + ": " + h.value + "\r\n"
			want := "unreadable request (duplicate " + h.long + " header)"
			t.Run(h.long+"/"+name, func(t *testing.T) {
				ins := []string{
					register(extra+fromAlice, toAlice),  // before the original
					register(fromAlice, toAlice, extra), // after it
				}
				if h.long != "Content-Length" { // whose folded value framing refuses
					ins = append(ins, register(fromAlice, toAlice, name+":\r\n "+h.value+"\r\n")) // folded
				}
				for _, in := range ins {
					_, err := new(Sniffer).Sniff([]byte(in), nil)
					if err == nil || err.Error() != want {
						t.Fatalf("Sniff: %v, want %s\n%s", err, want, in)
					}
					if r := new(Sniffer).RefusalReply([]byte(in), proxy.AsRefusal(err)); !bytes.HasPrefix(r, []byte("SIP/2.0 400 ")) {
						t.Fatalf("refusal %q", r)
					}
					_, w := newWatcher(t, []byte(register(fromAlice, toAlice)), nil)
					v := w.Client([]byte(in))
					if !bytes.HasPrefix(v.Reply, []byte("SIP/2.0 400 ")) || text(v.Refusal) != want || v.Close {
						t.Fatalf("Client: %+v", v)
					}
				}
				res := "SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bK.r1\r\n" + fromAlice +
					"To: <sip:alice@example.com>;tag=t\r\nCall-ID: r1\r\nCSeq: 1 REGISTER\r\n" + extra + "Content-Length: 0\r\n\r\n"
				if h.long == "Max-Forwards" {
					res = strings.Replace(res, extra, extra+extra, 1) // responses carry none of their own
				}
				_, w := newWatcher(t, []byte(register(fromAlice, toAlice)), nil)
				if reason, drop := w.Target([]byte(res)); text(reason) != "target message dropped (duplicate "+h.long+" header)" || !drop {
					t.Fatalf("Target: %q, %v", text(reason), drop)
				}
			})
		}
	}
	// A clean answer passes.
	_, w := newWatcher(t, []byte(register(fromAlice, toAlice)), nil)
	res := "SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bK.r1\r\n" + fromAlice +
		"To: <sip:alice@example.com>;tag=t\r\nCall-ID: r1\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"
	if reason, drop := w.Target([]byte(res)); reason != nil || drop {
		t.Fatalf("clean answer: %q, %v", text(reason), drop)
	}
}

// mostRepeated counts the singleton headers of the message msg begins with
// the plain way (lines, continuations, names lower-cased in ASCII, compact
// forms expanded) and returns the one seen most often.
func mostRepeated(msg []byte) (string, int) {
	block, _, _ := strings.Cut(string(msg), "\r\n\r\n")
	lines := strings.Split(block, "\r\n")[1:]
	var headers []string
	for _, l := range lines {
		if len(headers) > 0 && (strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t")) {
			headers[len(headers)-1] += l
			continue
		}
		headers = append(headers, l)
	}
	compact := map[string]string{"f": "from", "t": "to", "i": "call-id", "l": "content-length"}
	counts := map[string]int{}
	for _, h := range headers {
		name, _, _ := strings.Cut(h, ":")
		name = strings.Map(func(r rune) rune {
			if 'A' <= r && r <= 'Z' {
				return r + 'a' - 'A'
			}
			return r
		}, strings.TrimSpace(name))
		if long, ok := compact[name]; ok {
			name = long
		}
		switch name {
		case "from", "to", "call-id", "cseq", "max-forwards", "content-length":
			counts[name]++
		}
		if _, v, _ := strings.Cut(h, ":"); (name == "from" || name == "to") && addresses(v) > 1 {
			counts[name]++ // a list of addresses on one line
		}
	}
	best, n := "", 0
	for name, c := range counts {
		if c > n {
			best, n = name, c
		}
	}
	return best, n
}

// addresses counts the name-addr/addr-spec values of a From or To value:
// one more at each comma outside a quoted string (outside angle brackets)
// and outside angle brackets.
func addresses(v string) int {
	n, inQuotes, inAngle := 1, false, false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case inAngle:
			inAngle = c != '>'
		case inQuotes:
			if c == '\\' {
				i++
			} else {
				inQuotes = c != '"'
			}
		case c == '"':
			inQuotes = true
		case c == '<':
			inAngle = true
		case c == ',':
			n++
		}
	}
	return n
}

// FuzzSingletons checks the duplicate detection of the header walk against
// mostRepeated on any header block: the walk finds a duplicate exactly
// when there is one, and never panics.
func FuzzSingletons(f *testing.F) {
	f.Add("From: <sip:a@b>\r\nf: <sip:c@b>\r\n")            // long and compact From
	f.Add("To: <sip:a@b>\r\n\tx\r\nTO: <sip:c@b>\r\n")      // a continuation, then To again in capitals
	f.Add("Call-ID: 1\r\nCall-ID : 2\r\n")                  // a space before the colon
	f.Add("CSeq: 1 A\r\nX-CSeq: 2 A\r\n")                   // a name that only ends in CSeq
	f.Add("Max-Forwards: 1\r\nmax-forwards: 2\r\nl: 0\r\n") // Max-Forwards twice
	f.Add("Content-Length: 0\r\nl: 0\r\n")                  // Content-Length twice, agreeing
	f.Add("i: 1\r\nt: 2\r\nf: 3\r\nFrom\r\n : 4\r\n")       // a name folded onto the next line
	f.Add("Fr\u00f6m: 1\r\nFrom: 2\r\n")                    // a name that is not From
	f.Fuzz(func(t *testing.T, headers string) {
		block := "OPTIONS sip:x SIP/2.0\r\n" + headers + "\r\nContent-Length: 0\r\n\r\n"
		if i := strings.Index(block, "\r\n\r\n"); i >= 0 {
			block = block[:i+4]
		}
		var sc scan
		if _, err := contentLength([]byte(block), DefaultMaxMessage, &sc); err != nil {
			return // framing refuses it: nothing is judged
		}
		_, n := mostRepeated([]byte(block))
		if (sc.dup != nil) != (n > 1) {
			t.Fatalf("walk: %v; plain count: %d\n%q", sc.dup, n, block)
		}
	})
}
