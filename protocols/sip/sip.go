// Package sip routes SIP over TCP and TLS connections (service types sip and
// sips) and follows them for the blacklist.
//
// The proxy's stream listener hands the first bytes of a connection to
// Sniffer. Its Decision names the service from the domain of the From URI of
// the first request, and, for a REGISTER, the registering user that
// check_certificate compares with the client certificate's CN. The Decision's
// Watcher then frames both directions by Content-Length for the life of the
// connection and judges each message:
//
//   - a later request whose From domain is not the connection's service is
//     answered 403 by gatehouse and not forwarded: a connection is bound to
//     the service of its first request, and any other domain counts as
//     refused, whether or not it names another configured service;
//   - a 401, 403 or 407 answering a REGISTER or INVITE that carried
//     credentials is a target rejection (failed credentials); the ordinary
//     challenge of a request without credentials is not;
//   - keep-alives (RFC 5626 CRLF CRLF pings, CRLF pongs) pass both ways.
//
// sipgo parses every message that is judged; this package only finds where
// messages end, which sipgo then confirms.
package sip

import (
	"bytes"
	"strings"

	sipmsg "github.com/emiago/sipgo/sip"

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
	// body, for the life of the connection. Zero means DefaultMaxMessage.
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
	if limit <= 0 {
		limit = DefaultMaxMessage
	}
	// CRLFs before the start line are keep-alives (RFC 3261 §7.5).
	b := first
	for len(b) >= 2 && b[0] == '\r' && b[1] == '\n' {
		b = b[2:]
	}
	essential := make([]byte, 0, 256)
	hdr, total, err := measure(b, 0, limit, &essential)
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
	msg, err := parseHead(essential, total-hdr)
	if err != nil {
		return nil, err
	}
	req, ok := msg.(*sipmsg.Request)
	if !ok {
		return nil, ErrNotRequest
	}
	user, host, err := from(req)
	if err != nil {
		return nil, err
	}

	d := &proxy.Decision{Service: strings.ToLower(host)}
	if req.Method == sipmsg.REGISTER {
		d.Identity = user
	}
	w := &watcher{service: d.Service, max: limit}
	w.frames[proxy.FromClient].max = limit
	w.frames[proxy.FromTarget].max = limit
	if info != nil {
		w.client = info.Client
		// When the certificate vouches for the registering user (the CN
		// compared as check_certificate does), the proxy may forward over
		// TLS, which tells the PBX the user was certificate-authenticated:
		// no other user may then register on this connection.
		if d.Identity != "" && strings.EqualFold(info.VerifiedCN, d.Identity) {
			w.identity = d.Identity
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
// disagreement is how requests get smuggled past a watcher.
func parseHead(block []byte, body int) (sipmsg.Message, error) {
	msg, n, err := parser.ParseHeaders(block, true)
	switch {
	case msg == nil:
		return nil, ErrNotSIP
	case err != nil || n != len(block):
		return nil, ErrMalformed
	}
	if cl := msg.ContentLength(); cl == nil || int(*cl) != body {
		return nil, ErrContentLength
	}
	return msg, nil
}

// parseMessage parses the message that head begins with, as framed before.
func parseMessage(head []byte, max int) (sipmsg.Message, error) {
	i := bytes.Index(head, blankLine)
	if i < 0 {
		// The relay cut the head inside the header block.
		return nil, ErrTooLarge
	}
	block := head[:i+len(blankLine)]
	body, err := contentLength(block, max, nil)
	if err != nil {
		return nil, err
	}
	return parseHead(block, body)
}

// from returns the user and host of the From URI of req.
func from(req *sipmsg.Request) (user, host string, err error) {
	h := req.From()
	switch {
	case h == nil:
		return "", "", ErrNoFrom
	case h.Address.Host == "":
		return "", "", ErrFromNoHost
	}
	return h.Address.User, h.Address.Host, nil
}

// isKeepAlive reports whether a framed message is a CRLF keep-alive.
func isKeepAlive(msg []byte) bool {
	return len(msg) == 2 && msg[0] == '\r' && msg[1] == '\n'
}
