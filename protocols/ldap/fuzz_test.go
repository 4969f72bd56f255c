package ldap

import (
	"bytes"
	"crypto/tls"
	"errors"
	"testing"

	ber "github.com/go-asn1-ber/asn1-ber"

	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// addSeeds gives a fuzz target real traffic captured from OpenLDAP's
// clients and slapd (see TestCaptureFixtures) and the junk the bad-input
// tests know.
func addSeeds(f *testing.F, add func([]byte)) {
	for _, name := range []string{
		"ldapwhoami-bind-dn.ber",         // simple bind with a DN: routes
		"ldapwhoami-bind-down-level.ber", // simple bind as domain\user: routes
		"ldapsearch-bind-anonymous.ber",  // anonymous bind: refused
		"ldapwhoami-sasl-digest-md5.ber", // SASL without a name: refused
		"ldapwhoami-starttls.ber",        // StartTLS: upgrade
		"ldapwhoami-whoami.ber",          // extended operation other than StartTLS
		"ldapsearch-search.ber",          // search: not a bind
		"ldapsearch-unbind.ber",          // unbind: no response possible
		"slapd-bind-success.ber",         // responses, for the watcher's target side
		"slapd-bind-invalid-credentials.ber",
		"slapd-search-entry.ber",
		"slapd-starttls-success.ber",
	} {
		add(fixture(f, name))
	}
	add([]byte{0x30, 0x80, 0x02, 0x01, 0x01, 0x00, 0x00})             // indefinite length
	add([]byte{0x30, 0x84, 0x00, 0xa0, 0x00, 0x00, 0x02, 0x01, 0x01}) // 10 MB length prefix
	add([]byte{0x30, 0x07, 0x02, 0x7f, 0x01, 0x60, 0x02, 0x02, 0x01}) // inner length beyond the message
	add(nested(300))                                                  // nesting
	add(bindOpFor(`example.com\alice`))                               // hand-built bind
	add(bindOpFor("cn=a\\,b+dc=x,DC=#16076578616d706c65"))            // escapes, multi-valued RDN, BER value
}

// FuzzSniff: no input panics the sniffer or makes it wait for a message
// that is already whole, a decision is complete, and every refusal is
// answered with a well-formed LDAP message or nothing.
func FuzzSniff(f *testing.F) {
	addSeeds(f, func(b []byte) { f.Add(b, false) })
	f.Fuzz(func(t *testing.T, first []byte, onTLS bool) {
		s := &Sniffer{MaxMessage: 4096}
		info := &proxy.ConnInfo{}
		if onTLS {
			info.TLS = nonNilTLS
		}
		orig := bytes.Clone(first)
		d, err := s.Sniff(first, info)
		if !bytes.Equal(first, orig) {
			t.Fatal("Sniff modified first")
		}
		switch {
		case errors.Is(err, proxy.ErrNeedMore):
			if n, ferr := frame(first); ferr == nil && n <= len(first) {
				t.Fatalf("ErrNeedMore for a whole message of %d bytes", n)
			}
		case err != nil:
			if reply := s.RefusalReply(first, proxy.AsRefusal(err)); reply != nil {
				ldapResult(t, reply)
			}
		case d.UpgradeTLS:
			if onTLS || d.Service != "" {
				t.Fatalf("upgrade %+v on TLS %v", d, onTLS)
			}
			ldapResult(t, d.Reply)
		default:
			if d.Service == "" || d.Watcher == nil || d.Reply != nil {
				t.Fatalf("incomplete decision %+v", d)
			}
		}
	})
}

// FuzzWatcher: framing and judging any message, whole or as a head,
// from either side, never panics; every answer is a well-formed LDAP
// message, and a connection is only ever closed for a reason.
func FuzzWatcher(f *testing.F) {
	addSeeds(f, func(b []byte) { f.Add(b, 0) })
	f.Fuzz(func(t *testing.T, buf []byte, cut int) {
		w := &watcher{service: "example.com"}
		for _, dir := range []proxy.Direction{proxy.FromClient, proxy.FromTarget} {
			n, err := w.Frame(dir, buf)
			if err != nil {
				continue
			}
			if n < 2 {
				t.Fatalf("Frame = %d", n)
			}
			head := buf[:min(n, len(buf))]
			if cut > 0 && cut < len(head) {
				head = head[:cut]
			}
			if n > len(buf) && cut <= 0 {
				continue // the relay waits for more
			}
			if dir == proxy.FromTarget {
				w.Target(head)
				continue
			}
			v := w.Client(head)
			if v.Close && said(v.Refusal) == "" {
				t.Fatalf("closed without a reason: %+v", v)
			}
			if v.Reply != nil {
				ldapResult(t, v.Reply)
			}
		}
	})
}

// bindOpFor is a hand-built simple bind as name.
func bindOpFor(name string) []byte {
	return encode(1, bindOp(name, ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, "pw", "")))
}

// nonNilTLS marks a connection as TLS already, as on the LDAPS port.
var nonNilTLS = &tls.ConnectionState{}
