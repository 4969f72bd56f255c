// Package sip routes SIP over TCP and TLS connections (service types sip and
// sips) and follows them for the blacklist.
//
// The proxy's stream listener hands the first bytes of a connection to
// Sniffer. Its Decision names the service from the domain of the From URI of
// the first request, and, when the verified client certificate names the
// address the request acts for (cert.go), the certificate's CN for
// check_certificate. Every message must carry From, To, Call-ID, CSeq,
// Max-Forwards and Content-Length at most once (frame.go finds duplicates on
// its raw walk, parseHead checks sipgo agrees), so that what is routed and
// checked is what the target reads. The Decision's Watcher then frames both
// directions by Content-Length for the life of the connection and judges
// each message:
//
//   - a later request whose From domain is not the connection's service is
//     answered 403 by gatehouse and not forwarded: a connection is bound to
//     the service of its first request, and any other domain counts as
//     refused, whether or not it names another configured service;
//   - a 401, 403 or 407 answering a REGISTER or INVITE that carried
//     credentials is a target rejection (failed credentials); the ordinary
//     challenge of a request without credentials is not;
//   - on a certified connection, a request for another user is answered 403;
//   - a request with a duplicate or unreadable singleton header is answered
//     400, and such a message from the target is dropped, both counted;
//   - keep-alives (RFC 5626 CRLF CRLF pings, CRLF pongs) pass both ways.
//
// sipgo parses every message that is judged; this package only finds where
// messages end, which sipgo then confirms.
package sip

import (
	"bytes"
	"net/netip"
	"strings"

	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// DefaultMaxMessage is the default size cap of a SIP message, header block
// plus body. It equals the default limits.first_packet_max, so the head the
// relay gives a Watcher is the whole message.
const DefaultMaxMessage = 64 << 10

// Sniffer reads the first SIP request of a connection. Its zero value is
// ready to use and it is safe for concurrent use.
type Sniffer struct {
	// MaxMessage caps every message in both directions, header block plus
	// body, for the life of the connection. Zero means the connection's
	// ConnInfo.MaxMessage (limits.first_packet_max of the configuration it
	// was accepted under), or DefaultMaxMessage without one.
	// It should not exceed limits.first_packet_max, or a Watcher may be
	// given a head that ends inside a header block and must refuse it.
	MaxMessage int
}

var _ proxy.Sniffer = (*Sniffer)(nil)

// parser is sipgo's, shared: parsing only reads its header table.
var parser = sipmsg.NewParser()

// Sniff returns the Decision for the first request in first, or
// proxy.ErrNeedMore until the whole request (body included) is there.
func (s *Sniffer) Sniff(first []byte, info *proxy.ConnInfo) (*proxy.Decision, error) {
	limit := s.MaxMessage
	if limit <= 0 && info != nil {
		limit = info.MaxMessage
	}
	if limit <= 0 {
		limit = DefaultMaxMessage
	}
	// CRLFs before the start line are keep-alives (RFC 3261 §7.5).
	b := first
	for len(b) >= 2 && b[0] == '\r' && b[1] == '\n' {
		b = b[2:]
	}
	sc := scan{essential: make([]byte, 0, 512), collect: true}
	hdr, total, err := measure(b, 0, limit, &sc)
	if err != nil {
		// A start line that is not a request is the better reason, and
		// refuses at once what would otherwise be waited for.
		if serr := checkStartLine(b); serr != nil {
			return nil, serr
		}
		return nil, err
	}
	if total > len(b) {
		return nil, proxy.ErrNeedMore
	}
	if sc.dup != nil {
		return nil, sc.dup
	}
	msg, err := parseHead(sc.essential, total-hdr)
	if err != nil {
		return nil, err
	}
	req, ok := msg.(*sipmsg.Request)
	if !ok {
		return nil, ErrNotRequest
	}
	id, err := identify(req)
	if err != nil {
		return nil, err
	}

	d := &proxy.Decision{Service: configs.FoldName(id.from.host), Who: id.record().String()}
	w := &watcher{service: d.Service, max: limit}
	w.frames[proxy.FromClient].max = limit
	w.frames[proxy.FromTarget].max = limit
	if info != nil {
		w.client = info.Client
		// When the certificate names the identity the request claims (see
		// certifies), the proxy may forward over TLS, which tells the PBX
		// the user was certificate-authenticated: every later request on
		// the connection must then keep to that user.
		if leaf := verifiedLeaf(info); leaf != nil && id.certifiable() && certifies(leaf, id.record()) {
			d.Identity = info.VerifiedCN
			w.identity = id.record()
		}
	}
	d.Watcher = w
	return d, nil
}

// checkStartLine refuses a first line that sipgo cannot read as a request
// line, as soon as the line is complete.
func checkStartLine(b []byte) error {
	i := bytes.Index(b, crlf)
	if i < 0 {
		return nil
	}
	msg, _, err := parser.ParseHeaders(b[:i+len(crlf)], true)
	switch {
	case msg == nil && err != nil:
		return ErrNotSIP
	case msg != nil:
		if _, ok := msg.(*sipmsg.Request); !ok {
			return ErrNotRequest
		}
	}
	return nil
}

// parseHead parses a header block, through its blank line, with sipgo and
// checks that sipgo agrees with measure on where the message ends: a
// disagreement is how requests get smuggled past a watcher. It also checks
// that sipgo found each singleton header once: a From or To whose value is
// a comma-separated list becomes two headers in sipgo, on one raw line.
func parseHead(block []byte, body int) (sipmsg.Message, error) {
	msg, n, err := parser.ParseHeaders(block, true)
	switch {
	case msg == nil:
		return nil, ErrNotSIP
	case err != nil || n != len(block):
		return nil, unreadable(block)
	}
	if cl := msg.ContentLength(); cl == nil || int(*cl) != body {
		return nil, ErrContentLength
	}
	var seen [nSingle]bool
	for _, h := range msg.(interface{ Headers() []sipmsg.Header }).Headers() { // Request and Response have it
		k := -1
		switch h.(type) {
		case *sipmsg.FromHeader:
			k = hFrom
		case *sipmsg.ToHeader:
			k = hTo
		case *sipmsg.CallIDHeader:
			k = hCallID
		case *sipmsg.CSeqHeader:
			k = hCSeq
		case *sipmsg.MaxForwardsHeader:
			k = hMaxForwards
		case *sipmsg.ContentLengthHeader:
			k = hContentLength
		}
		if k < 0 {
			continue
		}
		if seen[k] {
			return nil, errDuplicate[k]
		}
		seen[k] = true
	}
	return msg, nil
}

// unreadable names the singleton header of block that sipgo cannot parse,
// or returns ErrMalformed when the fault lies elsewhere.
func unreadable(block []byte) error {
	start := bytes.Index(block, crlf) + len(crlf)
	h := headerLines{rest: block[start:]}
	for name, line := h.next(); line != nil; name, line = h.next() {
		if k := singleton(name); k >= 0 && !readable(line) {
			return errUnreadable[k]
		}
	}
	return ErrMalformed
}

// readable reports whether sipgo parses one raw header line (its
// continuation lines folded the way sipgo folds them) without error.
func readable(line []byte) bool {
	folded := bytes.ReplaceAll(line[:len(line)-len(crlf)], crlf, nil)
	_, err := headersParser.ParseHeader(nil, folded)
	return err == nil
}

// headersParser is sipgo's table of header parsers, for single lines.
var headersParser = sipmsg.HeadersParser(sipmsg.DefaultHeadersParser())

// parseMessage parses the message that head begins with, as framed before.
// A message that sipgo parses but that repeats a singleton header is
// returned with the HeaderError, so that it can be answered.
func parseMessage(head []byte, max int) (sipmsg.Message, error) {
	i := bytes.Index(head, blankLine)
	if i < 0 {
		// The relay cut the head inside the header block.
		return nil, ErrTooLarge
	}
	block := head[:i+len(blankLine)]
	var sc scan
	body, err := contentLength(block, max, &sc)
	if err != nil {
		return nil, err
	}
	msg, err := parseHead(block, body)
	if sc.dup != nil {
		if msg == nil {
			msg, _, _ = parser.ParseHeaders(block, true)
		}
		return msg, sc.dup
	}
	return msg, err
}

// uri is the user and host of a SIP URI: an address of record.
type uri struct{ user, host string }

// String is the address of record as the admin UI shows it.
func (u uri) String() string {
	if u.user == "" {
		return "sip:" + u.host
	}
	return "sip:" + u.user + "@" + u.host
}

// identity is what a request says about who sends it.
type identity struct {
	method   sipmsg.RequestMethod
	from, to uri
}

// record is the address the request acts for, the one a certificate must
// name: the address of record a REGISTER binds (the To URI, RFC 3261
// §10.2), and for every other request the From URI.
func (id identity) record() uri {
	if id.method == sipmsg.REGISTER {
		return id.to
	}
	return id.from
}

// certifiable reports whether one certificate can vouch for the request:
// a REGISTER by one user for another (a third-party registration) would
// need two, and reaches the target over the plain port.
func (id identity) certifiable() bool {
	return id.method != sipmsg.REGISTER || id.from.user == id.to.user
}

// identify reads the identity of req from the headers parseHead checked,
// and refuses a request without the headers every request must carry
// (RFC 3261 §8.1.1), or whose CSeq names another method (§8.1.1.5).
func identify(req *sipmsg.Request) (identity, error) {
	id := identity{method: req.Method}
	f, t := req.From(), req.To()
	switch {
	case f == nil:
		return id, ErrNoFrom
	case f.Address.Host == "":
		return id, ErrFromNoHost
	case !validHost(f.Address.Host):
		return id, ErrFromBadHost
	case t == nil:
		return id, ErrNoTo
	case t.Address.Host == "":
		return id, ErrToNoHost
	case !validHost(t.Address.Host):
		return id, ErrToBadHost
	case req.CallID() == nil:
		return id, ErrNoCallID
	case req.CSeq() == nil:
		return id, ErrNoCSeq
	case req.CSeq().MethodName != req.Method:
		return id, ErrCSeqMethod
	}
	id.from = uri{f.Address.User, f.Address.Host}
	id.to = uri{t.Address.User, t.Address.Host}
	if id.method == sipmsg.REGISTER && !configs.EqualName(id.to.host, id.from.host) {
		return id, ErrToOtherService
	}
	return id, nil
}

// validHost reports whether h is a SIP URI's host (RFC 3261 §25.1): an
// IPv6 reference, or labels as configs.HostLabels takes them (ASCII
// letters, digits and '-', and '_', which service names may hold). sipgo
// takes any bytes there; a host gatehouse could not route, or one a PBX
// reads otherwise, is refused as malformed.
func validHost(h string) bool {
	if strings.HasPrefix(h, "[") {
		a, err := netip.ParseAddr(strings.TrimSuffix(h[1:], "]"))
		return strings.HasSuffix(h, "]") && err == nil && a.Is6() && a.Zone() == ""
	}
	return configs.HostLabels(h)
}

// isKeepAlive reports whether a framed message is a CRLF keep-alive.
func isKeepAlive(msg []byte) bool {
	return len(msg) == 2 && msg[0] == '\r' && msg[1] == '\n'
}
