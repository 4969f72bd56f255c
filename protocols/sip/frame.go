package sip

import (
	"bytes"
	"strings"

	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// Over a stream a SIP message is a header block ended by an empty line and
// then exactly Content-Length bytes of body (RFC 3261 §7.5, §18.3). Between
// messages either side may send keep-alives (RFC 5626 §3.5.1): a client pings
// with CRLF CRLF, the server pongs with a single CRLF.
//
// Framing runs on every message in both directions for the life of the
// connection, so it only finds the two numbers it needs (where the header
// block ends, what Content-Length says) and leaves parsing to sipgo, which
// then checks that it agrees (see parseHead).

var (
	crlf      = []byte("\r\n")
	blankLine = []byte("\r\n\r\n")
)

// maxMethod bounds the first token of a start line (a method, or "SIP/2.0"
// in a status line). Real methods are at most 9 letters; the bound lets
// binary junk be refused at its first bytes rather than at MaxMessage.
const maxMethod = 32

// A framer splits one direction of a stream into messages. It remembers how
// far it has searched the current message for the end of its header block,
// so a message that trickles in byte by byte is searched once, not once per
// read. A framer belongs to the one relay goroutine of its direction.
type framer struct {
	max     int // largest message accepted, header block plus body
	scanned int // bytes of the current message already searched for blankLine
}

// frame returns the length of the message or keep-alive at the start of buf,
// or proxy.ErrNeedMore.
func (f *framer) frame(buf []byte) (int, error) {
	if len(buf) > 0 && buf[0] == '\r' {
		// A keep-alive: each CRLF is passed on as a frame of its own, which
		// covers both the ping (two of them) and the pong (one).
		f.scanned = 0
		if len(buf) < 2 {
			return 0, proxy.ErrNeedMore
		}
		if buf[1] != '\n' {
			return 0, ErrNotSIP
		}
		return 2, nil
	}
	hdr, total, err := measure(buf, f.scanned, f.max, nil)
	if err == proxy.ErrNeedMore && hdr == 0 {
		// The blank line may begin in the last three bytes seen.
		f.scanned = max(len(buf)-len(blankLine)+1, 0)
		return 0, err
	}
	f.scanned = 0
	return total, err
}

// measure finds the header block of the message at the start of buf,
// searching for its end from offset from on, and returns the block's length
// and the message's total length. While the block is incomplete it returns
// hdr == 0 and proxy.ErrNeedMore. Messages longer than max are refused.
// With essential set, the walk over the headers also collects what routing
// needs parsed (see contentLength).
func measure(buf []byte, from, max int, essential *[]byte) (hdr, total int, err error) {
	if !plausible(buf) {
		return 0, 0, ErrNotSIP
	}
	limit := min(len(buf), max)
	if from > limit {
		from = limit
	}
	i := bytes.Index(buf[from:limit], blankLine)
	if i < 0 {
		if len(buf) >= max {
			return 0, 0, ErrTooLarge
		}
		return 0, 0, proxy.ErrNeedMore
	}
	hdr = from + i + len(blankLine)
	body, err := contentLength(buf[:hdr], max, essential)
	if err != nil {
		return hdr, 0, err
	}
	if body > max-hdr {
		return hdr, 0, ErrTooLarge
	}
	return hdr, hdr + body, nil
}

// plausible reports whether b can begin a SIP start line: a token (the
// method, or the SIP-Version of a status line) followed by a space. It only
// refuses early what sipgo would refuse later.
func plausible(b []byte) bool {
	for i, c := range b {
		switch {
		case c == ' ':
			return i > 0
		case i >= maxMethod || !isTokenChar(c) && c != '/':
			return false
		}
	}
	return true
}

// isTokenChar reports whether c may appear in an RFC 3261 §25.1 token.
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-.!%*_+`'~", c) >= 0
}

// contentLength returns the body length that the header block announces in
// Content-Length (or its compact form l). It is absent only at the framing
// layer's peril, so a missing header, a value that is not a number, or two
// headers that disagree are refused; sipgo would frame such a stream
// differently from the target.
//
// When essential is not nil, the same walk appends to it the start line and
// the From and Content-Length lines, ended by a blank line: all that the
// routing decision needs sipgo to parse. Parsing every header would take
// three times as long, and the Watcher parses the whole request anyway
// before it is forwarded.
func contentLength(block []byte, max int, essential *[]byte) (int, error) {
	n, found := 0, false
	start := bytes.Index(block, crlf) + len(crlf)
	if essential != nil {
		*essential = append(*essential, block[:start]...)
	}
	h := headerLines{rest: block[start:]}
	for name, line := h.next(); line != nil; name, line = h.next() {
		cl := isContentLength(name)
		if essential != nil && (cl || isFrom(name)) {
			*essential = append(*essential, line...)
		}
		if !cl {
			continue
		}
		_, value, _ := bytes.Cut(line[:len(line)-len(crlf)], []byte(":"))
		v, err := parseLength(bytes.Trim(value, " \t"), max)
		if err != nil {
			return 0, err // a folded value lands here too
		}
		if found && v != n {
			return 0, ErrContentLength
		}
		n, found = v, true
	}
	if !found {
		return 0, ErrNoContentLength
	}
	if essential != nil {
		*essential = append(*essential, crlf...)
	}
	return n, nil
}

// isContentLength and isFrom match a header name in its long or compact
// form (RFC 3261 §7.3.3), case-insensitively; the length test first keeps
// them cheap on the other headers of every message.
func isContentLength(name []byte) bool {
	switch len(name) {
	case 1:
		return name[0]|0x20 == 'l'
	case len("content-length"):
		return bytes.EqualFold(name, []byte("content-length"))
	}
	return false
}

func isFrom(name []byte) bool {
	switch len(name) {
	case 1:
		return name[0]|0x20 == 'f'
	case len("from"):
		return bytes.EqualFold(name, []byte("from"))
	}
	return false
}

// headerLines walks the header lines of a header block, past its start
// line, the way sipgo splits them: a line that begins with a space or tab
// continues the header before it (RFC 3261 §7.3.1).
type headerLines struct {
	rest []byte // what is left of the block, ending in its blank line
}

// next returns the name and the raw line(s), CRLFs included, of the next
// header, or a nil line at the blank line.
func (h *headerLines) next() (name, line []byte) {
	if len(h.rest) <= len(crlf) {
		return nil, nil
	}
	// Every line ends in CRLF, and the block in a blank line, so the
	// search always succeeds and a continuation check never runs off.
	end := 0
	for {
		end += bytes.Index(h.rest[end:], crlf) + len(crlf)
		if c := h.rest[end]; c != ' ' && c != '\t' {
			break
		}
	}
	line, h.rest = h.rest[:end], h.rest[end:]
	name, _, _ = bytes.Cut(line, []byte(":"))
	return bytes.TrimSpace(name), line
}

// parseLength parses a decimal Content-Length no larger than max, without
// overflowing on a longer one.
func parseLength(b []byte, max int) (int, error) {
	if len(b) == 0 {
		return 0, ErrContentLength
	}
	v := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, ErrContentLength
		}
		v = v*10 + int(c-'0')
		if v > max {
			return 0, ErrTooLarge
		}
	}
	return v, nil
}
