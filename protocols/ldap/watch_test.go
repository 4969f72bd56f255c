package ldap

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
	"testing"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/gatehouse-pbx/gatehouse/protocols/ldap/internal/slapdtest"
	"github.com/gatehouse-pbx/gatehouse/proxy"
)

func TestFrame(t *testing.T) {
	for _, tc := range []struct {
		name string
		buf  []byte
		n    int
		err  error
	}{
		{"empty", nil, 0, proxy.ErrNeedMore},
		{"tag only", []byte{0x30}, 0, proxy.ErrNeedMore},
		{"short form", []byte{0x30, 0x05}, 7, nil},
		{"short form maximum", []byte{0x30, 0x7f}, 129, nil},
		{"long form, one octet", []byte{0x30, 0x81, 0x80}, 131, nil},
		{"long form, length octets missing", []byte{0x30, 0x82, 0x01}, 0, proxy.ErrNeedMore},
		{"long form, two octets", []byte{0x30, 0x82, 0x01, 0x00}, 260, nil},
		{"four octets, as Active Directory sends them", []byte{0x30, 0x84, 0x00, 0x00, 0x00, 0x0c}, 18, nil},
		{"a claimed 10 MB: the size, not the bytes", []byte{0x30, 0x84, 0x00, 0xa0, 0x00, 0x00}, 10<<20 + 6, nil},
		{"indefinite", []byte{0x30, 0x80}, 0, errIndefinite},
		{"five octets", []byte{0x30, 0x85, 0, 0, 0, 0, 1}, 0, errLongLength},
		{"beyond 2 GiB", []byte{0x30, 0x84, 0xff, 0xff, 0xff, 0xff}, 0, errLongLength},
		{"reserved 0xff", []byte{0x30, 0xff}, 0, errLongLength},
		{"not a SEQUENCE", []byte{0x31, 0x03}, 0, errNotMessage},
		{"TLS record", []byte{0x16}, 0, errNotMessage},
	} {
		n, err := frame(tc.buf)
		if n != tc.n || !errors.Is(err, tc.err) {
			t.Errorf("%s: frame(%x) = %d, %v; want %d, %v", tc.name, tc.buf, n, err, tc.n, tc.err)
		}
	}
	// Captured messages frame to exactly their length.
	for _, f := range []string{"ldapwhoami-bind-dn.ber", "slapd-search-entry.ber", "ldapwhoami-starttls.ber"} {
		msg := fixture(t, f)
		if n, err := frame(msg[:2]); err != nil || n != len(msg) {
			t.Errorf("%s: frame = %d, %v; want %d", f, n, err, len(msg))
		}
	}
}

func TestReadMessage(t *testing.T) {
	msg := fixture(t, "slapd-starttls-success.ber")
	tlsBytes := []byte{0x16, 0x03, 0x03}
	r := bytes.NewReader(append(slices.Clone(msg), tlsBytes...))
	got, err := readMessage(r, 1024)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("readMessage = %x, %v; want %x", got, err, msg)
	}
	if rest, _ := io.ReadAll(r); !bytes.Equal(rest, tlsBytes) {
		t.Fatalf("readMessage consumed what followed the message: %x left", rest)
	}
	if _, err := readMessage(bytes.NewReader([]byte{0x30, 0x84, 0x00, 0xa0, 0x00, 0x00}), 1024); !errors.Is(err, errLongLength) {
		t.Errorf("10 MB claim: %v, want %v", err, errLongLength)
	}
	if _, err := readMessage(bytes.NewReader(msg[:len(msg)-1]), 1024); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated: %v, want %v", err, io.ErrUnexpectedEOF)
	}
}

// TestWatcherClient judges what a client sends after the routing bind, on
// a connection routed to example.com.
func TestWatcherClient(t *testing.T) {
	w := &watcher{service: "example.com"}
	bigBind := bindMessage(t, "uid=alice,dc=example,dc=com")
	for _, tc := range []struct {
		name   string
		msg    []byte
		head   int    // the relay hands over only this much when > 0
		code   int    // the resultCode the client is answered with; -1: forwarded
		reason string // reported as suspicious
		close  bool
	}{
		{"same domain, down-level", bindMessage(t, `example.com\bob`), 0, -1, "", false},
		{"same domain, other case", bindMessage(t, "uid=bob,dc=EXAMPLE,dc=Com"), 0, -1, "", false},
		{"other service's domain", bindMessage(t, "uid=mallory,dc=example,dc=org"), 0, goldap.LDAPResultUnwillingToPerform, "bind for another service", false},
		{"other service, down-level", bindMessage(t, `example.org\mallory`), 0, goldap.LDAPResultUnwillingToPerform, "bind for another service", false},
		{"subdomain is another service", bindMessage(t, "uid=bob,dc=pbx,dc=example,dc=com"), 0, goldap.LDAPResultUnwillingToPerform, "bind for another service", false},
		{"anonymous rebind", fixture(t, "ldapsearch-bind-anonymous.ber"), 0, goldap.LDAPResultInappropriateAuthentication, "anonymous bind", false},
		{"SASL without name", fixture(t, "ldapwhoami-sasl-digest-md5.ber"), 0, goldap.LDAPResultInappropriateAuthentication, "SASL bind without name", false},
		{"search", fixture(t, "ldapsearch-search.ber"), 0, -1, "", false},
		{"WhoAmI", fixture(t, "ldapwhoami-whoami.ber"), 0, -1, "", false},
		{"unbind", fixture(t, "ldapsearch-unbind.ber"), 0, -1, "", false},
		{"large search, head only", fixture(t, "ldapsearch-search.ber"), 20, -1, "", false},
		{"StartTLS after the bind", fixture(t, "ldapwhoami-starttls.ber"), 0, goldap.LDAPResultOperationsError, "", false},
		{"bind larger than the head", bigBind, 20, goldap.LDAPResultProtocolError, "request too large to check", true},
		{"messageID not an INTEGER", []byte{0x30, 0x05, 0x04, 0x01, 0x01, 0x60, 0x00}, 0, goldap.LDAPResultProtocolError, "malformed LDAP message", true},
		{"undecodable bind", []byte{0x30, 0x07, 0x02, 0x01, 0x01, 0x60, 0x02, 0x02, 0x05}, 0, goldap.LDAPResultProtocolError, "malformed LDAP message", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := w.Frame(proxy.FromClient, tc.msg)
			if err != nil || n != len(tc.msg) {
				t.Fatalf("Frame = %d, %v; want %d", n, err, len(tc.msg))
			}
			head := tc.msg
			if tc.head > 0 {
				head = head[:tc.head]
			}
			v := w.Client(head)
			if said(v.Refusal) != tc.reason || v.Close != tc.close {
				t.Errorf("verdict %+v, want reason %q, close %v", v, tc.reason, tc.close)
			}
			if tc.code < 0 {
				if v.Reply != nil {
					t.Errorf("message answered with %x, want it forwarded", v.Reply)
				}
				return
			}
			if v.Reply == nil {
				t.Fatal("message forwarded, want it answered")
			}
			if _, _, code := ldapResult(t, v.Reply); int(code) != tc.code {
				t.Errorf("answered with resultCode %d, want %d", code, tc.code)
			}
		})
	}
}

func TestWatcherTarget(t *testing.T) {
	w := &watcher{service: "example.com"}
	for _, tc := range []struct {
		name   string
		msg    []byte
		head   int
		reason string
	}{
		{"bind success", fixture(t, "slapd-bind-success.ber"), 0, ""},
		{"invalid credentials", fixture(t, "slapd-bind-invalid-credentials.ber"), 0, string(proxy.ReasonCredentials)},
		{"invalid DN", fixture(t, "slapd-bind-invalid-dn.ber"), 0, ""},
		{"SASL in progress", result(2, goldap.ApplicationBindResponse, goldap.LDAPResultSaslBindInProgress, ""), 0, ""},
		{"search entry", fixture(t, "slapd-search-entry.ber"), 0, ""},
		{"search entry, head only", fixture(t, "slapd-search-entry.ber"), 10, ""},
		{"search done", fixture(t, "slapd-search-done.ber"), 0, ""},
		{"StartTLS response", fixture(t, "slapd-starttls-success.ber"), 0, ""},
		{"notice of disconnection", notice("bye"), 0, ""},
		{"invalid credentials with a 4-octet length", longForm(fixture(t, "slapd-bind-invalid-credentials.ber")), 0, string(proxy.ReasonCredentials)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := w.Frame(proxy.FromTarget, tc.msg)
			if err != nil || n != len(tc.msg) {
				t.Fatalf("Frame = %d, %v; want %d", n, err, len(tc.msg))
			}
			head := tc.msg
			if tc.head > 0 {
				head = head[:tc.head]
			}
			if got, _ := w.Target(head); said(got) != tc.reason {
				t.Errorf("Target = %q, want %q", said(got), tc.reason)
			}
		})
	}
}

// longForm re-encodes msg's outer length with four length octets, as
// Windows' LDAP stack writes every length.
func longForm(msg []byte) []byte {
	_, hdr, n, _ := header(msg)
	return append([]byte{0x30, 0x84, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}, msg[hdr:]...)
}

// TestWatcherWithSlapd follows a go-ldap client session through the proxy
// to a real slapd: failed binds are reported on every bind of the
// connection, a bind for another domain never reaches the target.
func TestWatcherWithSlapd(t *testing.T) {
	s := slapdtest.Start(t, slapdtest.Config{Suffix: "dc=example,dc=com", Users: []slapdtest.User{
		{UID: "alice", Password: "alice-pw"}, {UID: "bob", Password: "bob-pw"},
	}})
	_, port, _ := net.SplitHostPort(s.Addr)
	gh := startProxy(t, "  - {name: example.com, target: 127.0.0.1, ports: {ldap: "+port+"}}\n")
	c := gh.dial(t, false)

	if err := c.Bind(s.DN("alice"), "wrong"); !goldap.IsErrorWithCode(err, goldap.LDAPResultInvalidCredentials) {
		t.Fatalf("first bind, wrong password: %v", err)
	}
	// reported returns the texts of the refusals reported so far, once
	// there are n of them: the relay reports a target's answer after it
	// has forwarded it.
	reported := func(n int) []string {
		var got []string
		for _, ev := range gh.Guard.WaitEvents(n) {
			got = append(got, ev.Reason)
		}
		return got
	}
	steps := []struct {
		name   string
		do     func() error
		code   uint16 // expected result code, 0 for success
		reason string // reported for this step
	}{
		{"bind", func() error { return c.Bind(s.DN("alice"), "alice-pw") }, 0, ""},
		{"search", func() error {
			_, err := c.Search(goldap.NewSearchRequest(s.Suffix, goldap.ScopeWholeSubtree, goldap.NeverDerefAliases,
				0, 0, false, "(uid=bob)", []string{"cn"}, nil))
			return err
		}, 0, ""},
		{"rebind, wrong password", func() error { return c.Bind(s.DN("bob"), "guess") }, goldap.LDAPResultInvalidCredentials, string(proxy.ReasonCredentials)},
		{"rebind, other domain", func() error { return c.Bind("uid=bob,dc=example,dc=org", "bob-pw") }, goldap.LDAPResultUnwillingToPerform, "bind for another service"},
		{"rebind, down-level name reaches slapd", func() error { return c.Bind(`example.com\bob`, "bob-pw") }, goldap.LDAPResultInvalidDNSyntax, ""},
		{"rebind", func() error { return c.Bind(s.DN("bob"), "bob-pw") }, 0, ""},
		// Last: go-ldap stops reading after a refused StartTLS.
		{"StartTLS late", func() error { return c.StartTLS(&tls.Config{InsecureSkipVerify: true}) }, goldap.LDAPResultOperationsError, ""},
	}
	want := []string{errCredentials.Text()} // the first bind
	for _, st := range steps {
		err := st.do()
		if st.code == 0 && err != nil || st.code != 0 && !goldap.IsErrorWithCode(err, st.code) {
			t.Fatalf("%s: %v, want result code %d", st.name, err, st.code)
		}
		if st.reason != "" {
			want = append(want, refusalSaying(st.reason).Text())
		}
		if got := reported(len(want)); !slices.Equal(got, want) {
			t.Fatalf("after %s: reported %q, want %q", st.name, got, want)
		}
	}
}
