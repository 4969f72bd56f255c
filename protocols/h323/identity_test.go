package h323

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"testing"

	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// TestSniffCertificate checks that a certificate vouches for a
// registration only when it names every alias the PBX will register, and
// that aliases of two users are refused whatever the certificate.
func TestSniffCertificate(t *testing.T) {
	alice := testpki.Template("alice")
	aliceAnd201 := testpki.Template("alice", "201@example.com")
	for _, tc := range []struct {
		name      string
		packet    []byte
		cert      *x509.Certificate
		certified bool
		err       error
	}{
		{"the one alias", facility(facilityOptions{}, rrq("example.com", false, h323ID("alice"))), alice, true, nil},
		{"the alias in another case", facility(facilityOptions{}, rrq("example.com", false, h323ID("ALICE"))), alice, true, nil},
		{"alias with the service's domain", facility(facilityOptions{}, rrq("example.com", false, h323ID("alice@example.com"))), alice, true, nil},
		{"alias with another domain", facility(facilityOptions{}, rrq("example.com", false, email("alice@example.org"))), alice, false, nil},
		{"url-ID", facility(facilityOptions{}, rrq("example.com", false, url("h323:alice@example.com:1720"))), alice, true, nil},
		{"name and number, number not named", facility(facilityOptions{}, rrq("example.com", false, h323ID("alice"), dialled("201"))), alice, false, nil},
		{"number first, not named", facility(facilityOptions{}, rrq("example.com", false, dialled("201"), h323ID("alice"))), alice, false, nil},
		{"name and number, both named", facility(facilityOptions{}, rrq("example.com", false, h323ID("alice"), dialled("201"))), aliceAnd201, true, nil},
		{"number named by a SAN URI", facility(facilityOptions{}, rrq("example.com", false, h323ID("alice"), dialled("201"))),
			testpki.Template("Alice's phone", "h323:alice@example.com", "sip:201@example.com;user=phone"), true, nil},
		{"another user's number", facility(facilityOptions{}, rrq("example.com", false, h323ID("alice"), dialled("202"))), aliceAnd201, false, nil},
		{"two users", facility(facilityOptions{}, rrq("example.com", false, h323ID("alice"), h323ID("bob"))), alice, false, errManyUsers},
		{"two users, one by e-mail", facility(facilityOptions{}, rrq("example.com", false, h323ID("alice"), email("bob@example.com"))), alice, false, errManyUsers},
		{"GRQ then RRQ with a second alias", facility(facilityOptions{}, grq("example.com", h323ID("alice")),
			rrq("example.com", false, h323ID("alice"), dialled("201"))), alice, false, nil},
		{"GRQ then RRQ for another user", facility(facilityOptions{}, grq("example.com", h323ID("alice")),
			rrq("example.com", false, h323ID("bob"))), alice, false, errOtherAlias},
		{"no alias", facility(facilityOptions{}, rrq("example.com", false)), alice, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info := &proxy.ConnInfo{VerifiedCN: tc.cert.Subject.CommonName,
				TLS: &tls.ConnectionState{PeerCertificates: []*x509.Certificate{tc.cert}}}
			d, err := Sniffer{}.Sniff(tc.packet, info)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Sniff: %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			if got := d.Identity != ""; got != tc.certified || got && d.Identity != info.VerifiedCN {
				t.Fatalf("Identity %q, want certified %v", d.Identity, tc.certified)
			}
		})
	}
}

// TestWatcherCertified: on a certified connection every later registration
// must be named by the certificate, all its aliases.
func TestWatcherCertified(t *testing.T) {
	first := facility(facilityOptions{}, rrq("example.com", false, h323ID("alice")))
	info := &proxy.ConnInfo{VerifiedCN: "alice", TLS: &tls.ConnectionState{PeerCertificates: []*x509.Certificate{testpki.Template("alice")}}}
	d, err := Sniffer{}.Sniff(first, info)
	if err != nil || d.Identity != "alice" {
		t.Fatalf("Sniff: %+v, %v", d, err)
	}
	for _, tc := range []struct {
		name string
		rrq  []byte
		want error
	}{
		{"the same again", first, nil},
		{"a lightweight RRQ", facility(facilityOptions{}, rrq("", false)), nil},
		{"a number the certificate does not name", facility(facilityOptions{}, rrq("example.com", false, h323ID("alice"), dialled("202"))), errOtherAlias},
		{"two users", facility(facilityOptions{}, rrq("example.com", false, h323ID("alice"), h323ID("bob"))), errManyUsers},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := d.Watcher.Client(tc.rrq)
			if tc.want == nil && (v.Close || v.Refusal != nil) || tc.want != nil && (!errors.Is(v.Refusal, tc.want) || !v.Close) {
				t.Fatalf("Client: %+v, want %v", v, tc.want)
			}
		})
	}
}
