package ldap

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	ber "github.com/go-asn1-ber/asn1-ber"
	goldap "github.com/go-ldap/ldap/v3"

	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// The helpers below stand in for the proxy's listener and relay, doing
// exactly what the proxy.Sniffer, proxy.Refuser and proxy.Watcher
// contracts promise and nothing more, so that this package is tested with
// real clients and a real slapd on its own.

// gated is what gate made of a client connection.
type gated struct {
	d     *proxy.Decision
	err   error    // Sniff's refusal, or the read error that ended sniffing
	first []byte   // the bytes sniffed, to be replayed to the target
	conn  net.Conn // the client connection, TLS after an upgrade
	tls   bool     // the connection was upgraded with StartTLS
}

// gate plays the listener on conn: it hands every byte read so far to
// Sniff until it decides, writes a Decision's Reply, terminates TLS with
// cert on UpgradeTLS and sniffs again inside, and answers a refusal with
// RefusalReply. info describes the client side (TLS set for LDAPS).
func gate(conn net.Conn, s *Sniffer, info *proxy.ConnInfo, cert tls.Certificate) gated {
	var buf []byte
	chunk := make([]byte, 4096)
	upgraded := false
	for {
		n, rerr := conn.Read(chunk)
		buf = append(buf, chunk[:n]...)
		if n > 0 {
			d, err := s.Sniff(buf, info)
			switch {
			case err == nil && d.UpgradeTLS:
				if _, err := conn.Write(d.Reply); err != nil {
					return gated{err: err}
				}
				tc := tls.Server(conn, &tls.Config{Certificates: []tls.Certificate{cert}})
				if err := tc.Handshake(); err != nil {
					return gated{err: err}
				}
				st := tc.ConnectionState()
				info.TLS, conn, buf, upgraded = &st, tc, nil, true
				continue
			case err == nil:
				return gated{d: d, first: buf, conn: conn, tls: upgraded}
			case !errors.Is(err, proxy.ErrNeedMore):
				if reply := s.RefusalReply(buf, proxy.AsRefusal(err)); reply != nil {
					conn.Write(reply)
				}
				return gated{err: err, first: buf, conn: conn, tls: upgraded}
			}
		}
		if rerr != nil {
			return gated{err: rerr, first: buf, conn: conn, tls: upgraded}
		}
	}
}

// clientTo runs a go-ldap client over one end of a pipe while gate
// serves the other, and returns what gate made of it and the client's
// error. The client's connection is closed once the gate has decided.
func clientTo(t *testing.T, s *Sniffer, info *proxy.ConnInfo, cert tls.Certificate, client func(*goldap.Conn) error) (gated, error) {
	t.Helper()
	cc, sc := net.Pipe()
	c := goldap.NewConn(cc, false)
	c.Start()
	clientErr := make(chan error, 1)
	go func() { clientErr <- client(c) }()
	g := gate(sc, s, info, cert)
	if g.conn != nil {
		g.conn.Close()
	}
	sc.Close()
	err := <-clientErr
	c.Close()
	return g, err
}

// firstMessage returns the first LDAPMessage a go-ldap client sends for
// client: real client encodings for table tests.
func firstMessage(t *testing.T, client func(*goldap.Conn) error) []byte {
	t.Helper()
	cc, sc := net.Pipe()
	c := goldap.NewConn(cc, false)
	c.Start()
	done := make(chan struct{})
	go func() {
		defer close(done)
		client(c)
	}()
	msg, err := readMessage(sc, DefaultMaxMessage)
	sc.Close()
	<-done
	c.Close()
	if err != nil {
		t.Fatalf("reading the client's first message: %v", err)
	}
	return msg
}

func bind(name, password string) func(*goldap.Conn) error {
	return func(c *goldap.Conn) error { return c.Bind(name, password) }
}

// relay plays the proxy's relay for a routed connection: it frames both
// directions with w.Frame, judges each whole message with w.Client or
// w.Target, forwards it or writes the verdict's Reply to the client, and
// collects every reported reason. first is replayed as the client's
// opening bytes. The two copying goroutines are waited for in Cleanup.
type relay struct {
	w       proxy.Watcher
	mu      sync.Mutex // guards reasons and serialises writes to client
	reasons []string
}

func startRelay(t *testing.T, client, target net.Conn, first []byte, w proxy.Watcher) *relay {
	r := &relay{w: w}
	var wg sync.WaitGroup
	closeBoth := sync.OnceFunc(func() { client.Close(); target.Close() })
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer closeBoth()
		r.pump(io.MultiReader(bytes.NewReader(first), client), proxy.FromClient, target, client)
	}()
	go func() {
		defer wg.Done()
		defer closeBoth()
		r.pump(target, proxy.FromTarget, client, client)
	}()
	t.Cleanup(func() { closeBoth(); wg.Wait() })
	return r
}

func (r *relay) pump(src io.Reader, dir proxy.Direction, dst, client net.Conn) {
	var buf []byte
	chunk := make([]byte, 32<<10)
	for {
		n, err := src.Read(chunk)
		buf = append(buf, chunk[:n]...)
		for {
			size, ferr := r.w.Frame(dir, buf)
			if errors.Is(ferr, proxy.ErrNeedMore) || (ferr == nil && size > len(buf)) {
				break
			}
			if ferr != nil {
				r.report(proxy.AsRefusal(ferr))
				return
			}
			msg := buf[:size]
			buf = buf[size:]
			if dir == proxy.FromTarget {
				reason, drop := r.w.Target(msg)
				r.report(reason)
				if drop {
					continue
				}
				if !r.write(dst, msg) {
					return
				}
				continue
			}
			v := r.w.Client(msg)
			r.report(v.Refusal)
			switch {
			case v.Reply != nil:
				r.write(client, v.Reply)
			case !r.write(dst, msg):
				return
			}
			if v.Close {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (r *relay) write(c net.Conn, b []byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, err := c.Write(b)
	return err == nil
}

func (r *relay) report(ref *proxy.Refusal) {
	if ref == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reasons = append(r.reasons, said(ref))
}

// Reasons returns the reasons reported so far.
func (r *relay) Reasons() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.reasons...)
}

// ldapResult decodes an LDAP response message and returns its messageID,
// protocolOp tag and resultCode; the test fails when b is none.
func ldapResult(t *testing.T, b []byte) (id int64, op ber.Tag, code uint16) {
	t.Helper()
	p, err := ber.DecodePacketErr(b)
	if err != nil {
		t.Fatalf("reply %x does not decode: %v", b, err)
	}
	if len(p.Children) < 2 || len(p.Children[1].Children) < 3 {
		t.Fatalf("reply is no LDAPResult: %s", ber.DescribePacket(p))
	}
	if lerr := goldap.GetLDAPError(p); lerr != nil {
		var e *goldap.Error
		if !errors.As(lerr, &e) {
			t.Fatalf("reply: %v", lerr)
		}
		code = e.ResultCode
	}
	return p.Children[0].Value.(int64), p.Children[1].Tag, code
}

// fixture reads a captured message from testdata.
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// said is what a refusal says in an LDAP diagnostic message: its detail, or
// its reason when it has none; "" for no refusal.
func said(err error) string {
	if err == nil {
		return ""
	}
	r := proxy.AsRefusal(err)
	if r == nil {
		return ""
	}
	if r.Detail != "" {
		return r.Detail
	}
	return string(r.Reason)
}

// refusalSaying returns the refusal that says text: one of the package's,
// or the proxy's reason of that name.
func refusalSaying(text string) *proxy.Refusal {
	for _, r := range []*proxy.Refusal{errAnonymous, errUnauthBind, errSASLNoName, errBindMethod, errNoDomain,
		errNotBind, errBadBind, errBadDN, errOtherService, errUncheckable, errNestedStartTLS, errEarlyData,
		errLateStartTLS, errNotMessage, errMalformed, errIndefinite, errLongLength, errHighTag, errEncoding} {
		if r.Detail == text {
			return r
		}
	}
	return &proxy.Refusal{Reason: proxy.Reason(text)}
}
