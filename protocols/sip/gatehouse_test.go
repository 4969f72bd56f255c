package sip

// Tests across the real proxy: sipgo phones talk through proxy.Server, with
// this package's Sniffer plugged in and the real blacklist as its Guard, to
// the sipgo PBX of peers_test.go.

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/blacklist"
	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
	"github.com/gatehouse-pbx/gatehouse/proxy"
	"github.com/gatehouse-pbx/gatehouse/proxy/proxytest"
)

// guard records the events for the test and passes them on to the real
// blacklist, its Next.
type guard struct{ *proxytest.Guard }

// reasons returns "client service: reason" for every event so far.
func (g guard) reasons() []string { return said(g.Events()) }

func said(evs []blacklist.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, fmt.Sprintf("%s %s: %s", e.Client, e.Service, e.Reason))
	}
	return out
}

// waitReasons checks the events against want, after waiting for len(want)
// of them: the relay may report just after it has forwarded the reply the
// test already has.
func (g guard) waitReasons(t *testing.T, want ...string) {
	t.Helper()
	if got := said(g.WaitEvents(len(want))); !equal(got, want) && !(len(got) == 0 && len(want) == 0) {
		t.Fatalf("events:\n got %q\nwant %q", got, want)
	}
}

// startGatehouse runs the proxy for a configuration, with this package's
// Sniffer on the sip and sips listeners and the real blacklist behind the
// guard.
func startGatehouse(t *testing.T, yaml string) (*proxy.Server, guard) {
	t.Helper()
	cfg, err := configs.Parse("gatehouse.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	g := guard{proxytest.NewBlacklist(t, cfg.Blacklist)}
	sip := proxy.Stream(&Sniffer{MaxMessage: int(cfg.Limits.FirstPacketMax)})
	srv := proxytest.NewServer(t, yaml, map[string]proxy.Handler{"sip": sip, "sips": sip}, g.Guard)
	return srv.Server, g
}

// startSIPGatehouse runs the proxy with a sip listener on a free loopback
// port, serving example.com from the PBX at pbxAddr; it returns the
// listener's address.
func startSIPGatehouse(t *testing.T, pbxAddr string, extra string) (string, guard) {
	t.Helper()
	srv, g := startGatehouse(t, fmt.Sprintf(`listen:
  sip: "127.0.0.1:%s"
services:
  - name: example.com
    target: 127.0.0.1
    ports: {sip: %s}
%s`, freePort(t), port(t, pbxAddr), extra))
	return srv.Addr("sip").String(), g
}

func port(t *testing.T, addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func timeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestGatehouseCalls: a phone registers (digest challenge), asks OPTIONS,
// calls (proxy-auth challenge, SDP, ACK, BYE) over one connection through
// gatehouse; only the call with a wrong password is suspicious.
func TestGatehouseCalls(t *testing.T) {
	pbx := startPBX(t, users)
	addr, g := startSIPGatehouse(t, pbx.addr, "")
	ctx := timeout(t)
	p := newPhone(t, "127.0.0.4", addr, "alice", "Example.com")

	expectStatus(t, "REGISTER", 200)(p.register(ctx, "alice-secret"))
	expectStatus(t, "OPTIONS", 200)(p.options(ctx))
	expectStatus(t, "INVITE", 200)(p.call(ctx, "bob", "alice-secret"))
	g.waitReasons(t)
	expectStatus(t, "INVITE with a wrong password", 403)(p.call(ctx, "bob", "guess"))
	g.waitReasons(t, "127.0.0.4 example.com: credentials rejected by target (INVITE 403)")
	if got := pbx.registrations(); !equal(got, []string{"alice/TCP"}) {
		t.Fatalf("PBX registrations %q", got)
	}
}

// TestGatehouseOtherService: on a connection bound to example.com, a
// request from another domain is answered 403 by gatehouse, counted, and
// the connection goes on.
func TestGatehouseOtherService(t *testing.T) {
	pbx := startPBX(t, users)
	addr, g := startSIPGatehouse(t, pbx.addr, "")
	ctx := timeout(t)
	p := newPhone(t, "127.0.0.5", addr, "alice", "example.com")

	expectStatus(t, "REGISTER", 200)(p.register(ctx, "alice-secret"))
	p.domain = "other.example"
	expectStatus(t, "OPTIONS from other.example", 403)(p.options(ctx))
	expectStatus(t, "REGISTER at other.example", 403)(p.register(ctx, "alice-secret"))
	p.domain = "example.com"
	expectStatus(t, "OPTIONS", 200)(p.options(ctx))
	g.waitReasons(t,
		"127.0.0.5 example.com: "+errOtherDomain.Error(),
		"127.0.0.5 example.com: "+errOtherDomain.Error())
	if got := pbx.registrations(); !equal(got, []string{"alice/TCP"}) {
		t.Fatalf("PBX registrations %q", got)
	}
}

// TestGatehouseUnknownService: a first request for a domain gatehouse does
// not serve is answered 403 and counted.
func TestGatehouseUnknownService(t *testing.T) {
	pbx := startPBX(t, users)
	addr, g := startSIPGatehouse(t, pbx.addr, "")
	p := newPhone(t, "127.0.0.6", addr, "alice", "unknown.example")
	expectStatus(t, "REGISTER", 403)(p.register(timeout(t), "alice-secret"))
	g.waitReasons(t, "127.0.0.6 unknown.example: "+string(proxy.ReasonUnknownService))
}

// TestGatehouseBruteForce: a REGISTER brute force from 127.0.0.2 gets the
// address blacklisted, while 127.0.0.3 keeps registering.
func TestGatehouseBruteForce(t *testing.T) {
	pbx := startPBX(t, users)
	addr, g := startSIPGatehouse(t, pbx.addr, "blacklist:\n  threshold: 5\n")
	ctx := timeout(t)
	attacker := newPhone(t, "127.0.0.2", addr, "alice", "example.com")
	phone := newPhone(t, "127.0.0.3", addr, "bob", "example.com")
	for i := range 6 { // one more than the threshold
		expectStatus(t, fmt.Sprintf("guess %d", i), 401)(attacker.register(ctx, fmt.Sprintf("guess-%d", i)))
		expectStatus(t, "bob's REGISTER", 200)(phone.register(ctx, "bob-secret"))
	}
	for deadline := time.Now().Add(5 * time.Second); !g.Blocked(netip.MustParseAddr("127.0.0.2")); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("127.0.0.2 not blocked; events %q", g.reasons())
		}
	}
	// A new connection from the attacker is closed unread.
	again := newPhone(t, "127.0.0.2", addr, "alice", "example.com")
	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if code, err := again.register(short, "alice-secret"); err == nil {
		t.Fatalf("blocked client registered: %d", code)
	}
	expectStatus(t, "bob's REGISTER after the block", 200)(phone.register(ctx, "bob-secret"))
	if g.Blocked(netip.MustParseAddr("127.0.0.3")) {
		t.Fatal("127.0.0.3 blocked")
	}
}

// TestGatehouseSIPS: gatehouse terminates TLS; a REGISTER goes on over TLS
// only when the client certificate chains to tls.client_cas and its CN is
// the registering user (check_certificate), otherwise over the plain port.
// A connection whose certificate vouched for one user registers no other.
func TestGatehouseSIPS(t *testing.T) {
	serverCA, phones, rogue := testpki.NewCA(t, "server"), testpki.NewCA(t, "phones"), testpki.NewCA(t, "rogue")
	serverCert := serverCA.Server("example.com", "127.0.0.1")
	pbx := startPBX(t, map[string]string{"alice": "a", "bob": "b", "carol": "c", "dave": "d", "mallory": "m"})
	pbxTLS := pbx.serveTLS(t, serverCert.TLS)
	srv, g := startGatehouse(t, fmt.Sprintf(`listen:
  sips: "127.0.0.1:%s"
tls:
  certificates: [{cert: %s, key: %s}]
  client_cas: [%s]
  target_cas: [%s]
services:
  - name: example.com
    target: 127.0.0.1
    ports: {sip: %s, sips: %s}
    check_certificate: true
`, freePort(t), serverCert.CertFile, serverCert.KeyFile, phones.File, serverCA.File, port(t, pbx.addr), port(t, pbxTLS)))
	addr := srv.Addr("sips").String()
	ctx := timeout(t)
	phone := func(user string, cert *testpki.Issued) *phone {
		conf := &tls.Config{RootCAs: serverCA.Pool(), ServerName: "example.com"}
		if cert != nil {
			conf.Certificates = []tls.Certificate{cert.TLS}
		}
		return newPhoneTLS(t, "127.0.0.7", addr, user, "example.com", conf)
	}

	alice := phone("alice", phones.Client("alice"))
	expectStatus(t, "alice's REGISTER", 200)(alice.register(ctx, "a"))
	alice.user = "mallory"
	expectStatus(t, "mallory's REGISTER on alice's connection", 403)(alice.register(ctx, "m"))
	expectStatus(t, "bob's REGISTER without certificate", 200)(phone("bob", nil).register(ctx, "b"))
	expectStatus(t, "carol's REGISTER with alice's certificate", 200)(phone("carol", phones.Client("alice")).register(ctx, "c"))
	expectStatus(t, "dave's REGISTER with an untrusted certificate", 200)(phone("dave", rogue.Client("dave")).register(ctx, "d"))

	want := []string{"alice/TLS", "bob/TCP", "carol/TCP", "dave/TCP"}
	if got := pbx.registrations(); !equal(got, want) {
		t.Fatalf("PBX registrations %q, want %q", got, want)
	}
	g.waitReasons(t, "127.0.0.7 example.com: "+errOtherUser.Error())

	// The admin UI's list of connections says who each phone is: the
	// address of record, the TLS version and SNI, the certificate's CN
	// (verified or not), and whether the target is reached over TLS.
	seen := map[string]proxy.ConnStatus{}
	for _, c := range srv.Conns() {
		seen[c.Identity] = c
	}
	for _, w := range []struct {
		identity, cn string
		verified     bool
		targetTLS    bool
	}{
		{"sip:alice@example.com", "alice", true, true},
		{"sip:bob@example.com", "", false, false},
		{"sip:carol@example.com", "alice", true, false},
		{"sip:dave@example.com", "dave", false, false},
	} {
		c, ok := seen[w.identity]
		if !ok {
			t.Errorf("no connection of %s in %+v", w.identity, srv.Conns())
			continue
		}
		if c.TLSVersion != "TLS 1.3" || c.SNI != "example.com" || c.ClientCN != w.cn || c.ClientCNVerified != w.verified ||
			c.TargetTLS != w.targetTLS || c.Service != "example.com" {
			t.Errorf("%s: %+v", w.identity, c)
		}
	}
}
