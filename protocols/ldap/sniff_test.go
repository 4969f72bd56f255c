package ldap

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	goldap "github.com/go-ldap/ldap/v3"

	"github.com/gatehouse-pbx/gatehouse/proxy"
	"github.com/gatehouse-pbx/gatehouse/proxy/proxytest"
)

func TestRoutingKey(t *testing.T) {
	for _, tc := range []struct {
		name, key string
		err       error
	}{
		{`example.com\alice`, "example.com", nil},
		{`EXAMPLE.COM\alice`, "EXAMPLE.COM", nil}, // matched case-insensitively by the proxy
		{`example.com\ali\ce`, "example.com", nil},
		{"CN=alice,DC=example,DC=com", "example.com", nil},
		{"uid=alice,ou=people,dc=pbx,dc=example,dc=com", "pbx.example.com", nil},
		{"cn=alice,Dc=Example,dC=com", "Example.com", nil},
		{"cn=alice,domainComponent=example,DC=com", "example.com", nil},
		{"cn=alice,0.9.2342.19200300.100.1.25=example,dc=com", "example.com", nil},
		{`CN=Smith\, John,DC=example,DC=com`, "example.com", nil},           // escaped comma in a value
		{`CN=a\=b,DC=ex\61mple,DC=com`, "example.com", nil},                 // escaped "=" and hex escape
		{"CN=alice,DC=#16076578616d706c65,DC=com", "example.com", nil},      // BER-encoded value (IA5String)
		{"CN=alice+DC=branch,DC=example,DC=com", "branch.example.com", nil}, // multi-valued RDN
		{"dc=example,ou=x,dc=com", "example.com", nil},                      // all DC components, in order
		{"cn = alice , dc = example , dc = com", "example.com", nil},
		{`\alice`, "", errNoDomain},
		{`example.com\`, "", errNoDomain},
		{"cn=admin,o=example", "", errNoDomain},
		{"cn=alice,dc=,dc=com", "", errNoDomain},
		{"alice", "", errBadDN},
		{"alice@example.com", "", errBadDN},
		{"cn=alice,dc", "", errBadDN},
		{"cn=alice,dc=ex\\zzample", "", errBadDN},
	} {
		key, err := routingKey(tc.name)
		if key != tc.key || !errors.Is(err, tc.err) {
			t.Errorf("routingKey(%q) = %q, %v; want %q, %v", tc.name, key, err, tc.key, tc.err)
		}
	}
}

// TestSniffClients runs go-ldap as the client of the proxy: every way a
// real client opens a connection, and what it hears back when refused.
func TestSniffClients(t *testing.T) {
	target := startSink(t)
	gh := startProxy(t, fmt.Sprintf(`  - {name: example.com, target: 127.0.0.1, ports: {ldap: %[1]d}}
  - {name: pbx.example.com, target: 127.0.0.1, ports: {ldap: %[1]d}}
`, target.port()))
	clientTLS := func() *tls.Config { return &tls.Config{InsecureSkipVerify: true} }
	startTLS := func(then func(*goldap.Conn) error) func(*goldap.Conn) error {
		return func(c *goldap.Conn) error {
			if err := c.StartTLS(clientTLS()); err != nil {
				return err
			}
			return then(c)
		}
	}
	extended := func(oid string) func(*goldap.Conn) error {
		return func(c *goldap.Conn) error {
			_, err := c.Extended(goldap.NewExtendedRequest(oid, nil))
			return err
		}
	}
	search := func(c *goldap.Conn) error {
		_, err := c.Search(goldap.NewSearchRequest("dc=example,dc=com", goldap.ScopeWholeSubtree,
			goldap.NeverDerefAliases, 0, 0, false, "(uid=alice)", nil, nil))
		return err
	}
	for _, tc := range []struct {
		name    string
		onTLS   bool // the listener is LDAPS: TLS before the first byte
		client  func(*goldap.Conn) error
		service string // the routing key, "" when refused
		upgrade bool   // the route was found inside StartTLS
		reason  string // the refusal
		code    uint16 // the resultCode the client hears for the refusal
	}{
		{name: "down-level name", client: bind(`example.com\alice`, "pw"), service: "example.com"},
		{name: "DN", client: bind("CN=alice,DC=example,DC=com", "pw"), service: "example.com"},
		{name: "DN with OU", client: bind("uid=alice,ou=people,dc=pbx,dc=example,dc=com", "pw"), service: "pbx.example.com"},
		{name: "StartTLS, then bind", client: startTLS(bind(`example.com\alice`, "pw")), service: "example.com", upgrade: true},
		{name: "anonymous", client: func(c *goldap.Conn) error { return c.UnauthenticatedBind("") },
			reason: "anonymous bind", code: goldap.LDAPResultInappropriateAuthentication},
		{name: "anonymous inside StartTLS", client: startTLS(func(c *goldap.Conn) error { return c.UnauthenticatedBind("") }),
			reason: "anonymous bind", code: goldap.LDAPResultInappropriateAuthentication},
		{name: "name without password", client: func(c *goldap.Conn) error { return c.UnauthenticatedBind("cn=alice,dc=example,dc=com") },
			reason: "unauthenticated bind", code: goldap.LDAPResultUnwillingToPerform},
		{name: "SASL EXTERNAL", client: func(c *goldap.Conn) error { return c.ExternalBind() },
			reason: "SASL bind without name", code: goldap.LDAPResultInappropriateAuthentication},
		{name: "SASL DIGEST-MD5", client: func(c *goldap.Conn) error { return c.MD5Bind("example.com", "alice", "pw") },
			reason: "SASL bind without name", code: goldap.LDAPResultInappropriateAuthentication},
		{name: "NTLM (sicily)", client: func(c *goldap.Conn) error { return c.NTLMBind("example.com", "alice", "pw") },
			reason: "unsupported bind method", code: goldap.LDAPResultAuthMethodNotSupported},
		{name: "no domain", client: bind("cn=admin,o=example", "pw"),
			reason: "bind name without domain", code: goldap.LDAPResultUnwillingToPerform},
		{name: "unparseable DN", client: bind("cn=alice,dc", "pw"),
			reason: "bind DN unparseable", code: goldap.LDAPResultInvalidDNSyntax},
		{name: "search first", client: search,
			reason: "first operation not a bind", code: goldap.LDAPResultOperationsError},
		{name: "WhoAmI first", client: func(c *goldap.Conn) error { _, err := c.WhoAmI(nil); return err },
			reason: "first operation not a bind", code: goldap.LDAPResultOperationsError},
		{name: "StartTLS on LDAPS", onTLS: true, client: extended(oidStartTLS),
			reason: "StartTLS inside TLS", code: goldap.LDAPResultOperationsError},
		{name: "StartTLS twice", client: startTLS(extended(oidStartTLS)),
			reason: "StartTLS inside TLS", code: goldap.LDAPResultOperationsError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, clientErr := gh.clientTo(t, tc.onTLS, tc.client)
			if tc.service != "" {
				if g.err != nil {
					t.Fatalf("refused: %v", g.err)
				}
				if g.d.Service != tc.service || g.d.Watcher == nil || g.d.Reply != nil || g.d.UpgradeTLS {
					t.Fatalf("decision %+v, want service %q with a watcher", g.d, tc.service)
				}
				if g.tls != tc.upgrade {
					t.Errorf("decided with TLS upgrade %v, want %v", g.tls, tc.upgrade)
				}
				if n, _ := frame(g.first); n != len(g.first) {
					t.Errorf("sniffed %d bytes, the bind is %d: the sniffer decided before the message was whole", len(g.first), n)
				}
				select {
				case got := <-target.received:
					if !bytes.Equal(got, g.first) {
						t.Errorf("the target received %x, want the sniffed bind %x", got, g.first)
					}
				case <-time.After(proxytest.Wait):
					t.Error("the bind never reached the target")
				}
				return
			}
			if g.err == nil || said(g.err) != tc.reason {
				t.Fatalf("refusal %v, want %q", g.err, tc.reason)
			}
			if !goldap.IsErrorWithCode(clientErr, tc.code) {
				t.Fatalf("client heard %v, want LDAP result code %d", clientErr, tc.code)
			}
		})
	}
}

// bindMessage is a simple bind as go-ldap encodes it.
func bindMessage(t *testing.T, name string) []byte {
	return firstMessage(t, bind(name, "secret"))
}

func TestSniffWaitsForWholeMessage(t *testing.T) {
	msg := bindMessage(t, "uid=alice,dc=example,dc=com")
	s := &Sniffer{}
	for i := 1; i < len(msg); i++ {
		if d, err := s.Sniff(msg[:i], &proxy.ConnInfo{}); !errors.Is(err, proxy.ErrNeedMore) {
			t.Fatalf("Sniff of %d of %d bytes = %+v, %v; want ErrNeedMore", i, len(msg), d, err)
		}
	}
	// Pipelined requests after the bind do not disturb it, nor is first changed.
	pipelined := append(append([]byte(nil), msg...), fixture(t, "ldapsearch-search.ber")...)
	orig := bytes.Clone(pipelined)
	d, err := s.Sniff(pipelined, &proxy.ConnInfo{})
	if err != nil || d.Service != "example.com" || d.Who != "uid=alice,dc=example,dc=com" {
		t.Fatalf("Sniff = %+v, %v", d, err)
	}
	if !bytes.Equal(pipelined, orig) {
		t.Fatal("Sniff modified first")
	}
}

// TestSniffFixtures routes the first messages OpenLDAP's own clients sent
// (captured by TestCaptureFixtures).
func TestSniffFixtures(t *testing.T) {
	for _, tc := range []struct {
		file, service, reason string
	}{
		{"ldapwhoami-bind-dn.ber", "example.com", ""},
		{"ldapwhoami-bind-down-level.ber", "example.com", ""},
		{"ldapsearch-bind-anonymous.ber", "", "anonymous bind"},
		{"ldapwhoami-sasl-digest-md5.ber", "", "SASL bind without name"},
		{"ldapsearch-search.ber", "", "first operation not a bind"},
		{"ldapsearch-unbind.ber", "", "first operation not a bind"},
		{"ldapwhoami-whoami.ber", "", "first operation not a bind"},
	} {
		d, err := (&Sniffer{}).Sniff(fixture(t, tc.file), &proxy.ConnInfo{})
		switch {
		case tc.service != "" && (err != nil || d.Service != tc.service):
			t.Errorf("%s: Sniff = %+v, %v; want service %q", tc.file, d, err, tc.service)
		case tc.reason != "" && (err == nil || said(err) != tc.reason):
			t.Errorf("%s: Sniff = %+v, %v; want refusal %q", tc.file, d, err, tc.reason)
		}
	}
	d, err := (&Sniffer{}).Sniff(fixture(t, "ldapwhoami-starttls.ber"), &proxy.ConnInfo{})
	if err != nil || !d.UpgradeTLS || d.Service != "" || d.Watcher != nil {
		t.Fatalf("StartTLS: Sniff = %+v, %v; want an upgrade", d, err)
	}
	id, op, code := ldapResult(t, d.Reply)
	if id != 1 || op != goldap.ApplicationExtendedResponse || code != goldap.LDAPResultSuccess {
		t.Errorf("StartTLS reply: id %d, op %d, code %d", id, op, code)
	}
}

// nested is n SEQUENCEs, each holding the next, around a NULL, with long
// form lengths: junk that nests deeper than anything LDAP has.
func nested(n int) []byte {
	b := []byte{0x05, 0x00}
	for range n {
		l := len(b)
		b = append([]byte{0x30, 0x82, byte(l >> 8), byte(l)}, b...)
	}
	return b
}

// encode is a hand-built LDAPMessage: messageID id, protocolOp op.
func encode(id int64, op *ber.Packet) []byte {
	msg := ber.NewSequence("LDAPMessage")
	msg.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, "messageID"))
	msg.AppendChild(op)
	return msg.Bytes()
}

// bindOp is a BindRequest with the given authentication choice.
func bindOp(name string, auth *ber.Packet) *ber.Packet {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, goldap.ApplicationBindRequest, nil, "BindRequest")
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 3, "version"))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, name, "name"))
	op.AppendChild(auth)
	return op
}

// TestSniffBadInput: what an attacker or a confused client sends first is
// refused with a reason (reported as suspicious) and answered with a
// Notice of Disconnection, never a panic, and never after waiting for
// bytes that will not come.
func TestSniffBadInput(t *testing.T) {
	bindMsg := bindMessage(t, "uid=alice,dc=example,dc=com")
	for _, tc := range []struct {
		name   string
		first  []byte
		reason string // "" means ErrNeedMore: wait for more
	}{
		{"TLS ClientHello on the plain port", []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}, "not an LDAP message"},
		{"HTTP request", []byte("GET / HTTP/1.1\r\n"), "not an LDAP message"},
		{"truncated", bindMsg[:len(bindMsg)-1], ""},
		{"header only", []byte{0x30, 0x84, 0x00, 0x00}, ""},
		{"indefinite length", append([]byte{0x30, 0x80}, bindMsg[2:]...), "indefinite BER length"},
		{"reserved length octet", []byte{0x30, 0xff, 0x00}, "BER length too large"},
		{"five length octets", []byte{0x30, 0x85, 0x01, 0x00, 0x00, 0x00, 0x00}, "BER length too large"},
		{"10 MB length prefix", []byte{0x30, 0x84, 0x00, 0xa0, 0x00, 0x00, 0x02, 0x01, 0x01}, string(proxy.ReasonTooLarge)},
		{"just over the cap", []byte{0x30, 0x83, 0x01, 0x00, 0x00}, string(proxy.ReasonTooLarge)},
		{"inner length larger than the packet", []byte{0x30, 0x07, 0x02, 0x7f, 0x01, 0x60, 0x02, 0x02, 0x01}, "malformed LDAP message"},
		{"inner length overflowing", []byte{0x30, 0x0a, 0x02, 0x88, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, "malformed LDAP message"},
		{"deeply nested junk", nested(4000), "malformed LDAP message"},
		{"empty message", []byte{0x30, 0x00}, "malformed LDAP message"},
		{"messageID only", []byte{0x30, 0x03, 0x02, 0x01, 0x01}, "malformed LDAP message"},
		{"negative messageID", encode(-1, bindOp("dc=example", ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, "pw", ""))), "malformed LDAP message"},
		{"protocolOp not an application tag", encode(1, ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "x", "")), "malformed LDAP message"},
		{"bind without fields", encode(1, ber.Encode(ber.ClassApplication, ber.TypeConstructed, goldap.ApplicationBindRequest, nil, "")), "malformed bind request"},
		{"primitive bind", encode(1, ber.Encode(ber.ClassApplication, ber.TypePrimitive, goldap.ApplicationBindRequest, []byte{1}, "")), "malformed bind request"},
		{"reserved auth choice", encode(1, bindOp("dc=example", ber.NewString(ber.ClassContext, ber.TypePrimitive, 1, "pw", ""))), "unsupported bind method"},
		{"StartTLS with data behind it", append(fixture(t, "ldapwhoami-starttls.ber"), 0x16, 0x03, 0x01), "data after StartTLS request"},
		{"a response as first message", fixture(t, "slapd-bind-success.ber"), "first operation not a bind"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Sniffer{MaxMessage: 64 << 10}
			d, err := s.Sniff(tc.first, &proxy.ConnInfo{})
			if tc.reason == "" {
				if !errors.Is(err, proxy.ErrNeedMore) {
					t.Fatalf("Sniff = %+v, %v; want ErrNeedMore", d, err)
				}
				return
			}
			if err == nil || said(err) != tc.reason {
				t.Fatalf("Sniff = %+v, %v; want refusal %q", d, err, tc.reason)
			}
			if reply := s.RefusalReply(tc.first, proxy.AsRefusal(err)); reply != nil {
				ldapResult(t, reply) // every answer is a well-formed LDAP response
			}
		})
	}
}

// TestSniffHugeLengthAllocatesNothing: a header claiming 10 MB is refused
// from its first bytes, without allocating what it claims.
func TestSniffHugeLengthAllocatesNothing(t *testing.T) {
	first := append([]byte{0x30, 0x84, 0x00, 0xa0, 0x00, 0x00}, bytes.Repeat([]byte{0x04}, 60<<10)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := (&Sniffer{}).Sniff(first, &proxy.ConnInfo{})
	runtime.ReadMemStats(&after)
	if !errors.Is(err, errTooLarge) {
		t.Fatalf("Sniff: %v, want %v", err, errTooLarge)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Fatalf("Sniff allocated %d bytes for a claimed 10 MB message", grew)
	}
}

func TestRefusalReply(t *testing.T) {
	s := &Sniffer{}
	bindMsg := fixture(t, "ldapwhoami-bind-dn.ber")
	for _, tc := range []struct {
		name   string
		first  []byte
		reason string
		op     ber.Tag // the response op, ExtendedResponse with messageID 0 for a notice
		code   uint16
		none   bool // no reply: LDAP has no response for the request
	}{
		{"unknown service", bindMsg, string(proxy.ReasonUnknownService), goldap.ApplicationBindResponse, goldap.LDAPResultUnwillingToPerform, false},
		{"network not allowed", bindMsg, string(proxy.ReasonNetwork), goldap.ApplicationBindResponse, goldap.LDAPResultUnwillingToPerform, false},
		{"target unreachable", bindMsg, string(proxy.ReasonUnreachable), goldap.ApplicationBindResponse, goldap.LDAPResultUnavailable, false},
		{"anonymous", fixture(t, "ldapsearch-bind-anonymous.ber"), "anonymous bind", goldap.ApplicationBindResponse, goldap.LDAPResultInappropriateAuthentication, false},
		{"search first", fixture(t, "ldapsearch-search.ber"), "first operation not a bind", goldap.ApplicationSearchResultDone, goldap.LDAPResultOperationsError, false},
		{"WhoAmI first", fixture(t, "ldapwhoami-whoami.ber"), "first operation not a bind", goldap.ApplicationExtendedResponse, goldap.LDAPResultOperationsError, false},
		{"unbind first", fixture(t, "ldapsearch-unbind.ber"), "first operation not a bind", 0, 0, true},
		{"too large", []byte{0x30, 0x84, 0x00, 0xa0, 0x00, 0x00}, string(proxy.ReasonTooLarge), goldap.ApplicationExtendedResponse, goldap.LDAPResultProtocolError, false},
		{"junk", []byte("GET / HTTP/1.1\r\n"), "not an LDAP message", goldap.ApplicationExtendedResponse, goldap.LDAPResultProtocolError, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reply := s.RefusalReply(tc.first, refusalSaying(tc.reason))
			if tc.none {
				if reply != nil {
					t.Fatalf("reply %x, want none", reply)
				}
				return
			}
			id, op, code := ldapResult(t, reply)
			wantID := int64(0) // a Notice of Disconnection
			if m, err := decodeHead(tc.first); err == nil {
				wantID = m.id
			}
			if id != wantID || op != tc.op || code != tc.code {
				t.Fatalf("reply: id %d, op %d, code %d; want %d, %d, %d", id, op, code, wantID, tc.op, tc.code)
			}
			if p, _ := ber.DecodePacketErr(reply); !bytes.Contains(p.Children[1].Children[2].Data.Bytes(), []byte(tc.reason)) {
				t.Errorf("diagnosticMessage %q does not name the reason", p.Children[1].Children[2].Data)
			}
		})
	}
}

func BenchmarkSniffBind(b *testing.B) {
	msg := fixture(b, "ldapwhoami-bind-dn.ber")
	s := &Sniffer{}
	info := &proxy.ConnInfo{}
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := s.Sniff(msg, info); err != nil {
			b.Fatal(err)
		}
	}
}
