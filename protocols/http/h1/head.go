package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"sync"
)

var crlfcrlf = []byte("\r\n\r\n")

// readHead reads a message head up to and including the empty line that
// ends it, at most max bytes, and returns it as one string that the
// parsed fields share. It stops at the first empty line whatever its line
// ending, so that a head with bare LFs is read to its end and then refused
// by the parser rather than left half-read.
func readHead(br *bufio.Reader, max int) (string, error) {
	// Most heads arrive whole in one read: take them in one piece. (A head
	// with a bare LF may end elsewhere by the loop's reading, but the
	// parser refuses any bare LF, so both readings refuse it.) The reader
	// may hold only the start of it (the first byte of a request is read
	// on its own, see the request loop's awaitRequest): it is filled until
	// it holds a whole line.
	for {
		b, _ := br.Peek(br.Buffered())
		if i := bytes.Index(b, crlfcrlf); i >= 0 {
			if i+4 > max {
				return "", ErrHeadTooLarge
			}
			s := string(b[:i+4])
			br.Discard(i + 4)
			return s, nil
		}
		if len(b) >= max || len(b) >= br.Size() || bytes.IndexByte(b, '\n') >= 0 {
			break // too long for one piece, or whole lines already: the loop reads the rest
		}
		if _, err := br.Peek(len(b) + 1); err != nil {
			break // the loop reports it
		}
	}
	var buf []byte
	start := 0 // where the current line starts in buf
	for {
		line, err := br.ReadSlice('\n')
		if len(buf)+len(line) > max {
			return "", ErrHeadTooLarge
		}
		buf = append(buf, line...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF && len(buf) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		if l := buf[start:]; len(l) == 1 || (len(l) == 2 && l[0] == '\r') {
			return string(buf), nil
		}
		start = len(buf)
	}
}

// nextLine splits the first line off s. It refuses a line not ended by
// CRLF, and a CR anywhere else in it.
func nextLine(s string) (line, rest string, err error) {
	i := strings.IndexByte(s, '\n')
	if i < 1 || s[i-1] != '\r' {
		return "", "", ErrLineEnding
	}
	line = s[:i-1]
	if strings.IndexByte(line, '\r') >= 0 {
		return "", "", ErrLineEnding
	}
	return line, s[i+1:], nil
}

// parseFields parses field lines up to the empty line that ends s. Each
// field goes to h, except those that pick claims as its own; pick returns
// an error to refuse the message.
// inlineFields is how many fields a message's own allocation holds (an
// answer of nginx's has 8, curl's request 3); a head with more (a
// browser's request has about 14) gets a slice of exactly its count.
const inlineFields = 10

// requestAlloc and responseAlloc put a message and its fields in one
// allocation: one fewer per message, and no 16-field slice for a head of
// three. They come from pools and go back with Release, so that a
// kept-alive connection's requests and answers allocate only their heads'
// text: the two made up 80% of the bytes allocated per request, and the
// collector's runs under load (one every 2,600 requests) lengthened p99.
type requestAlloc struct {
	r Request
	f [inlineFields]Field
}

type responseAlloc struct {
	r Response
	f [inlineFields]Field
}

var (
	requestAllocs  = sync.Pool{New: func() any { return new(requestAlloc) }}
	responseAllocs = sync.Pool{New: func() any { return new(responseAlloc) }}
)

// fieldCount is how many fields the field section s (the head after its
// first line) holds at most: its lines but the empty last one.
func fieldCount(s string) int { return strings.Count(s, "\n") - 1 }

func parseFields(s string, h Header, pick func(name, value string) (bool, error)) (Header, error) {
	for {
		line, rest, err := nextLine(s)
		if err != nil {
			return nil, err
		}
		if line == "" {
			if rest != "" {
				return nil, ErrLineEnding
			}
			return h, nil
		}
		s = rest
		if line[0] == ' ' || line[0] == '\t' {
			return nil, ErrObsFold
		}
		colon := strings.IndexByte(line, ':')
		if colon <= 0 {
			return nil, ErrFieldName
		}
		name := line[:colon]
		if !isToken(name) {
			// Whitespace before the colon lands here: RFC 9112 section 5.1
			// says a server MUST reject it.
			return nil, ErrFieldName
		}
		value := trimOWS(line[colon+1:])
		for i := 0; i < len(value); i++ {
			if !fieldVChar[value[i]] {
				return nil, ErrFieldValue
			}
		}
		if pick != nil {
			taken, err := pick(name, value)
			if err != nil {
				return nil, err
			}
			if taken {
				continue
			}
		}
		h = append(h, Field{Name: name, Value: value})
	}
}

// parseVersion reads "HTTP/1.0" or "HTTP/1.1" and returns the minor
// version. Other 1.x minors are read as 1.1, as RFC 9110 section 2.5 asks;
// other majors are refused.
func parseVersion(v string) (int, error) {
	if len(v) != 8 || v[:5] != "HTTP/" || v[6] != '.' || v[5] < '0' || v[5] > '9' || v[7] < '0' || v[7] > '9' {
		return 0, errMalformedVersion
	}
	if v[5] != '1' {
		return 0, ErrVersion
	}
	if v[7] == '0' {
		return 0, nil
	}
	return 1, nil
}

var errMalformedVersion = errors.New("h1: malformed HTTP version")

// parseContentLength reads a Content-Length value: digits only (no sign,
// no list, not empty), at most 18 of them so that it cannot overflow.
func parseContentLength(v string) (int64, error) {
	if v == "" || len(v) > 18 {
		return 0, ErrContentLength
	}
	var n int64
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, ErrContentLength
		}
		n = n*10 + int64(c-'0')
	}
	return n, nil
}

// framing collects the fields that frame a message's body, the same way
// for requests and responses.
type framing struct {
	lengths, codings int    // Content-Length and Transfer-Encoding fields seen
	length           int64  // the Content-Length
	te               string // the Transfer-Encoding
}

// field takes name: value when it is one of the framing fields, for
// parseFields, and reports whether it did.
func (f *framing) field(name, value string) (bool, error) {
	switch len(name) {
	case 14:
		if equalFold(name, "Content-Length") {
			f.lengths++
			n, err := parseContentLength(value)
			if err != nil {
				return false, err
			}
			f.length = n
			return true, nil
		}
	case 17:
		if equalFold(name, "Transfer-Encoding") {
			f.codings++
			f.te = value
			return true, nil
		}
	}
	return false, nil
}

// check refuses framing a peer could read two ways: two lengths, a length
// and a coding, or any coding but chunked alone on HTTP/1.1 (RFC 9112
// section 6.1: HTTP/1.0 has no transfer codings).
func (f *framing) check(minor int) error {
	switch {
	case f.lengths > 1:
		return ErrContentLength
	case f.codings > 0 && f.lengths > 0:
		return ErrFramingConflict
	case f.codings > 0 && (f.codings > 1 || minor == 0 || !equalFold(f.te, "chunked")):
		return ErrTransferEncoding
	}
	return nil
}
