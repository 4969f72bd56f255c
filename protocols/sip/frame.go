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
// With sc set, the walk over the headers also collects what judging needs
// (see contentLength).
func measure(buf []byte, from, max int, sc *scan) (hdr, total int, err error) {
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
	body, err := contentLength(buf[:hdr], max, sc)
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

// Headers a SIP message carries exactly once (RFC 3261 §7.3.1: only a
// header whose grammar is a comma-separated list may repeat, and none of
// these is one). Two of any of them is how identity checks get borrowed:
// sipgo keeps the last From, other stacks the first, so gatehouse would
// route and check one header while the target acts on another.
const (
	hFrom = iota
	hTo
	hCallID
	hCSeq
	hMaxForwards
	hContentLength
	nSingle
)

// singleNames are the long names of the singleton headers, for reasons.
var singleNames = [nSingle]string{"From", "To", "Call-ID", "CSeq", "Max-Forwards", "Content-Length"}

// singleton returns which singleton header name is, in its long or compact
// form (RFC 3261 §7.3.3), case-insensitively, or -1. Switching on the
// length first keeps it cheap on the other headers of every message.
func singleton(name []byte) int {
	switch len(name) {
	case 1:
		switch name[0] | 0x20 {
		case 'f':
			return hFrom
		case 't':
			return hTo
		case 'i':
			return hCallID
		case 'l':
			return hContentLength
		}
	case 2:
		if bytes.EqualFold(name, []byte("to")) {
			return hTo
		}
	case 4:
		if bytes.EqualFold(name, []byte("from")) {
			return hFrom
		}
		if bytes.EqualFold(name, []byte("cseq")) {
			return hCSeq
		}
	case 7:
		if bytes.EqualFold(name, []byte("call-id")) {
			return hCallID
		}
	case 12:
		if bytes.EqualFold(name, []byte("max-forwards")) {
			return hMaxForwards
		}
	case 14:
		if bytes.EqualFold(name, []byte("content-length")) {
			return hContentLength
		}
	}
	return -1
}

// A scan is what the walk over a header block collects for judging a
// message, beyond the Content-Length that framing alone needs.
type scan struct {
	// essential, when collect is set, receives the start line and the
	// singleton header lines, ended by a blank line: all that the routing
	// decision needs sipgo to parse. Parsing every header would take three
	// times as long, and the Watcher parses the whole request anyway
	// before it is forwarded.
	essential []byte
	collect   bool
	// dup is the first singleton header found twice, raw, on the walk:
	// nil when there is none.
	dup error
}

// contentLength returns the body length that the header block announces in
// Content-Length (or its compact form l). It is absent only at the framing
// layer's peril, so a missing header, a value that is not a number, or two
// headers that disagree are refused; sipgo would frame such a stream
// differently from the target. Two that agree frame the stream alike and
// are left to the judging walk: with sc set, the same walk records the
// first singleton header that appears twice (sc.dup) and, if asked,
// collects the essential lines.
func contentLength(block []byte, max int, sc *scan) (int, error) {
	n, found := 0, false
	var seen [nSingle]bool
	start := bytes.Index(block, crlf) + len(crlf)
	if sc != nil && sc.collect {
		sc.essential = append(sc.essential, block[:start]...)
	}
	h := headerLines{rest: block[start:]}
	for name, line := h.next(); line != nil; name, line = h.next() {
		k := singleton(name)
		if k < 0 {
			continue
		}
		if sc != nil {
			if (seen[k] || (k == hFrom || k == hTo) && isList(line)) && sc.dup == nil {
				sc.dup = errDuplicate[k]
			}
			seen[k] = true
			if sc.collect {
				sc.essential = append(sc.essential, line...)
			}
		}
		if k != hContentLength {
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
	if sc != nil && sc.collect {
		sc.essential = append(sc.essential, crlf...)
	}
	return n, nil
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

// isList reports whether the value of a From or To line holds a comma
// outside a quoted string and outside angle brackets: a second address.
// RFC 3261 §20.10 puts a URI with a comma in angle brackets, so a valid
// single address never has one; sipgo would keep the first address and
// take the rest for parameters.
func isList(line []byte) bool {
	_, v, _ := bytes.Cut(line, []byte(":"))
	quoted, angle := false, false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case quoted && c == '\\':
			i++ // a quoted pair
		case c == '"' && !angle:
			quoted = !quoted
		case quoted:
		case c == '<':
			angle = true
		case c == '>':
			angle = false
		case c == ',' && !angle:
			return true
		}
	}
	return false
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
