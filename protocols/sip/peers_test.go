package sip

// Real SIP peers built with sipgo: a registrar-and-callee that challenges
// with digest authentication, and a phone. The fixture capture and the tests
// across the real proxy both use them.

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
)

var quiet = slog.New(slog.DiscardHandler)

// TestMain silences sipgo, which logs through its own default logger.
func TestMain(m *testing.M) {
	sipmsg.SetDefaultLogger(quiet)
	os.Exit(m.Run())
}

// pbx answers REGISTER with a 401 challenge, INVITE with a 407 challenge,
// and a request whose credentials are wrong with 401 (REGISTER) or 403
// (INVITE), as a PBX does.
type pbx struct {
	addr  string
	users map[string]string // user → password
	srv   *sipgo.Server

	mu         sync.Mutex
	registered []string // "user/transport" of each registration, in order
}

const realm = "gatehouse-test"

// users are the PBX accounts most tests use.
var users = map[string]string{"alice": "alice-secret", "bob": "bob-secret"}

// startPBX serves on a fresh loopback port until the test ends.
func startPBX(t testing.TB, accounts map[string]string) *pbx {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("pbx"), sipgo.WithUserAgentHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	p := &pbx{addr: ln.Addr().String(), users: accounts, srv: srv}
	chal := digest.Challenge{Realm: realm, Nonce: strconv.FormatInt(time.Now().UnixNano(), 36), Algorithm: "MD5"}

	srv.OnRegister(func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
		user, ok := p.check(req, "Authorization", &chal)
		switch {
		case req.GetHeader("Authorization") == nil:
			res := sipmsg.NewResponseFromRequest(req, 401, "Unauthorized", nil)
			res.AppendHeader(sipmsg.NewHeader("WWW-Authenticate", chal.String()))
			tx.Respond(res)
		case !ok:
			tx.Respond(sipmsg.NewResponseFromRequest(req, 401, "Unauthorized", nil))
		default:
			p.mu.Lock()
			p.registered = append(p.registered, user+"/"+req.Transport())
			p.mu.Unlock()
			tx.Respond(sipmsg.NewResponseFromRequest(req, 200, "OK", nil))
		}
	})
	srv.OnInvite(func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
		_, ok := p.check(req, "Proxy-Authorization", &chal)
		switch {
		case req.GetHeader("Proxy-Authorization") == nil:
			res := sipmsg.NewResponseFromRequest(req, 407, "Proxy Authentication Required", nil)
			res.AppendHeader(sipmsg.NewHeader("Proxy-Authenticate", chal.String()))
			tx.Respond(res)
		case !ok:
			tx.Respond(sipmsg.NewResponseFromRequest(req, 403, "Forbidden", nil))
		default:
			tx.Respond(sipmsg.NewResponseFromRequest(req, 100, "Trying", nil))
			tx.Respond(sipmsg.NewResponseFromRequest(req, 180, "Ringing", nil))
			ok := sipmsg.NewSDPResponseFromRequest(req, []byte(sdp("127.0.0.1", 40000)))
			ok.AppendHeader(&sipmsg.ContactHeader{Address: sipmsg.Uri{User: "pbx", Host: "127.0.0.1"}})
			tx.Respond(ok)
		}
	})
	srv.OnAck(func(*sipmsg.Request, sipmsg.ServerTransaction) {})
	srv.OnBye(func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
		tx.Respond(sipmsg.NewResponseFromRequest(req, 200, "OK", nil))
	})
	srv.OnOptions(func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
		tx.Respond(sipmsg.NewResponseFromRequest(req, 200, "OK", nil))
	})

	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.ServeTCP(ln) // returns once ln is closed
	}()
	t.Cleanup(func() {
		ln.Close()
		ua.Close()
		<-done
	})
	return p
}

// serveTLS makes the PBX serve SIP over TLS too, with cert, until the test
// ends; it returns the address.
func (p *pbx) serveTLS(t testing.TB, cert tls.Certificate) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.srv.ServeTLS(ln)
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String()
}

// check verifies the digest credentials in header; it returns the user.
func (p *pbx) check(req *sipmsg.Request, header string, chal *digest.Challenge) (string, bool) {
	h := req.GetHeader(header)
	if h == nil {
		return "", false
	}
	cred, err := digest.ParseCredentials(h.Value())
	if err != nil {
		return "", false
	}
	password, known := p.users[cred.Username]
	want, err := digest.Digest(chal, digest.Options{
		Method: string(req.Method), URI: cred.URI, Username: cred.Username, Password: password,
	})
	return cred.Username, known && err == nil && want.Response == cred.Response
}

func (p *pbx) registrations() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.registered...)
}

func sdp(ip string, port int) string {
	return fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\nm=audio %d RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\n", ip, ip, port)
}

// phone is a sipgo user agent registering as user@domain. Every request
// goes over one TCP connection to dest, whatever the request URI says.
type phone struct {
	ua        *sipgo.UserAgent
	client    *sipgo.Client
	dest      string
	user      string
	domain    string
	transport string // TCP or TLS
	// compact makes sipgo write compact header names (f:, v:, i:, l: ...).
	compact bool
}

// newPhone returns a phone; src, when not "", is the loopback address its
// connection comes from.
func newPhone(t testing.TB, src, dest, user, domain string) *phone {
	return newPhoneTLS(t, src, dest, user, domain, nil)
}

// newPhoneTLS returns a phone that speaks SIP over TLS with conf, or over
// TCP when conf is nil.
func newPhoneTLS(t testing.TB, src, dest, user, domain string, conf *tls.Config) *phone {
	t.Helper()
	if src == "" {
		src = "127.0.0.1"
	}
	opts := []sipgo.UserAgentOption{sipgo.WithUserAgent(user), sipgo.WithUserAgentHostname(src)}
	transport := "TCP"
	if conf != nil {
		opts, transport = append(opts, sipgo.WithUserAgenTLSConfig(conf)), "TLS"
	}
	ua, err := sipgo.NewUA(opts...)
	if err != nil {
		t.Fatal(err)
	}
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname(src), sipgo.WithClientConnectionAddr(src+":0"),
		sipgo.WithClientLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	return &phone{ua: ua, client: client, dest: dest, user: user, domain: domain, transport: transport}
}

// request builds a request from user@domain to callee@domain.
func (p *phone) request(method sipmsg.RequestMethod, callee string, body []byte) *sipmsg.Request {
	req := sipmsg.NewRequest(method, sipmsg.Uri{User: callee, Host: p.domain})
	from := &sipmsg.FromHeader{Address: sipmsg.Uri{User: p.user, Host: p.domain}}
	from.Params.Add("tag", sipmsg.GenerateTagN(8))
	req.AppendHeader(from)
	req.AppendHeader(&sipmsg.ToHeader{Address: sipmsg.Uri{User: callee, Host: p.domain}})
	req.AppendHeader(&sipmsg.ContactHeader{Address: sipmsg.Uri{User: p.user, Host: "127.0.0.1"}})
	if body != nil {
		req.AppendHeader(sipmsg.NewHeader("Content-Type", "application/sdp"))
	}
	req.SetBody(body)
	req.SetTransport(p.transport)
	req.SetDestination(p.dest)
	req.CompactHeaders = p.compact
	return req
}

// do sends req and answers a 401 or 407 challenge with password.
func (p *phone) do(ctx context.Context, req *sipmsg.Request, password string) (*sipmsg.Response, error) {
	res, err := p.client.Do(ctx, req)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != 401 && res.StatusCode != 407 {
		return res, nil
	}
	return p.client.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: p.user, Password: password})
}

// register registers the phone with password, and returns the final status.
func (p *phone) register(ctx context.Context, password string) (int, error) {
	req := p.request(sipmsg.REGISTER, p.user, nil)
	req.Recipient.User = ""
	res, err := p.do(ctx, req, password)
	if err != nil {
		return 0, err
	}
	return res.StatusCode, nil
}

func (p *phone) options(ctx context.Context) (int, error) {
	res, err := p.client.Do(ctx, p.request(sipmsg.OPTIONS, "pbx", nil))
	if err != nil {
		return 0, err
	}
	return res.StatusCode, nil
}

// call invites callee with password; an answered call is acknowledged and
// hung up at once.
func (p *phone) call(ctx context.Context, callee, password string) (int, error) {
	invite := p.request(sipmsg.INVITE, callee, []byte(sdp("127.0.0.1", 30000)))
	res, err := p.do(ctx, invite, password)
	if err != nil || res.StatusCode != 200 {
		if err == nil {
			return res.StatusCode, nil
		}
		return 0, err
	}
	// ACK and BYE stay in the dialog the 200 set up (RFC 3261 §13.2.2.4).
	inDialog := func(method sipmsg.RequestMethod, seq uint32) *sipmsg.Request {
		req := sipmsg.NewRequest(method, invite.Recipient)
		req.AppendHeader(sipmsg.HeaderClone(invite.From()))
		req.AppendHeader(sipmsg.HeaderClone(res.To()))
		req.AppendHeader(sipmsg.HeaderClone(invite.CallID()))
		req.AppendHeader(&sipmsg.CSeqHeader{SeqNo: seq, MethodName: method})
		req.SetBody(nil)
		req.SetTransport(p.transport)
		req.SetDestination(p.dest)
		return req
	}
	seq := invite.CSeq().SeqNo
	if err := p.client.WriteRequest(inDialog(sipmsg.ACK, seq)); err != nil {
		return 0, err
	}
	bye, err := p.client.Do(ctx, inDialog(sipmsg.BYE, seq+1))
	if err != nil {
		return 0, err
	}
	if bye.StatusCode != 200 {
		return 0, fmt.Errorf("BYE answered %d", bye.StatusCode)
	}
	return 200, nil
}

// recorder relays one TCP connection to target and keeps what each side
// sent: the client stream and the target stream of a real conversation.
type recorder struct {
	ln             net.Listener
	target         string
	client, server testpeer.Log
	done           chan struct{}
}

func startRecorder(t testing.TB, target string) *recorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{ln: ln, target: target, done: make(chan struct{})}
	go r.serve()
	t.Cleanup(func() {
		ln.Close()
		<-r.done
	})
	return r
}

func (r *recorder) serve() {
	defer close(r.done)
	c, err := r.ln.Accept()
	if err != nil {
		return
	}
	defer c.Close()
	s, err := net.Dial("tcp", r.target)
	if err != nil {
		return
	}
	defer s.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		io.Copy(io.MultiWriter(c, &r.server), s)
		c.(*net.TCPConn).CloseWrite()
	}()
	io.Copy(io.MultiWriter(s, &r.client), c)
	s.(*net.TCPConn).CloseWrite()
	wg.Wait()
}

func expectStatus(t *testing.T, what string, want int) func(int, error) {
	return func(got int, err error) {
		t.Helper()
		if err != nil || got != want {
			t.Fatalf("%s: got %d, %v; want %d", what, got, err, want)
		}
	}
}

func freePort(t *testing.T) string { return strconv.Itoa(testpeer.FreePort(t)) }
