package h1

import (
	"bufio"
	"strings"
)

// UntilClose is the body length of a response delimited by the target
// closing the connection.
const UntilClose = -2

// Response is a response head as gatehouse read it.
type Response struct {
	Minor      int
	StatusCode int
	// Reason is the reason phrase, possibly empty.
	Reason string
	// Header holds every field but Content-Length and Transfer-Encoding.
	Header Header
	// ContentLength is the Content-Length field's value, -1 without one:
	// for a response without a body (HEAD, 304) it tells the length of the
	// representation.
	ContentLength int64
	// BodyLength is how much body follows the head: a length (0 for none),
	// Chunked or UntilClose (RFC 9112 section 6.3).
	BodyLength int64
	// Close: the connection ends after this response.
	Close bool

	alloc *responseAlloc // where r lives, for Release; nil: not pooled
}

// Release gives the response's memory back, as Request.Release does.
func (r *Response) Release() {
	if a := r.alloc; a != nil {
		*a = responseAlloc{}
		responseAllocs.Put(a)
	}
}

// Bodyless reports whether a response to method with code has no body
// whatever its fields say.
func Bodyless(method string, code int) bool {
	return method == "HEAD" || code/100 == 1 || code == 204 || code == 304
}

// ReadResponse reads one response head from br, at most max bytes, for a
// request with the given method. Framing that a tolerant reader could take
// two ways (both Content-Length and Transfer-Encoding, a coding other than
// chunked, repeated lengths) is refused: the caller answers 502 and closes
// the target connection.
func ReadResponse(br *bufio.Reader, max int, method string) (*Response, error) {
	head, err := readHead(br, max)
	if err != nil {
		return nil, err
	}
	return ParseResponse(head, method)
}

// ParseResponse parses a whole response head.
func ParseResponse(head, method string) (*Response, error) {
	line, rest, err := nextLine(head)
	if err != nil {
		return nil, err
	}
	var (
		r *Response
		h Header
	)
	if n := fieldCount(rest); n <= inlineFields {
		a := responseAllocs.Get().(*responseAlloc)
		r, h = &a.r, a.f[:0]
		r.alloc = a
	} else {
		r, h = new(Response), make(Header, 0, n)
	}
	r.ContentLength = -1
	if err := r.parseLine(line); err != nil {
		return nil, err
	}
	var f framing
	r.Header, err = parseFields(rest, h, f.field)
	if err != nil {
		return nil, err
	}
	if err := f.check(r.Minor); err != nil {
		return nil, err
	}
	if f.lengths > 0 {
		r.ContentLength = f.length
	}
	switch {
	case Bodyless(method, r.StatusCode):
		r.BodyLength = 0
	case f.codings > 0:
		r.BodyLength = Chunked
	case f.lengths > 0:
		r.BodyLength = r.ContentLength
	default:
		r.BodyLength = UntilClose
	}
	if r.Minor == 0 {
		r.Close = !r.Header.HasToken("Connection", "keep-alive")
	} else {
		r.Close = r.Header.HasToken("Connection", "close")
	}
	if r.BodyLength == UntilClose {
		r.Close = true
	}
	return r, nil
}

// parseLine reads "HTTP-version SP 3DIGIT SP reason-phrase". A missing
// reason phrase is taken with or without its space (many embedded servers
// send "HTTP/1.1 200"): it carries no meaning.
func (r *Response) parseLine(line string) error {
	version, rest, ok := strings.Cut(line, " ")
	if !ok {
		return ErrStatusLine
	}
	minor, err := parseVersion(version)
	if err != nil {
		if err == errMalformedVersion {
			return ErrStatusLine
		}
		return err
	}
	code, reason, _ := strings.Cut(rest, " ")
	if len(code) != 3 || code[0] < '1' || code[0] > '5' || code[1] < '0' || code[1] > '9' || code[2] < '0' || code[2] > '9' {
		return ErrStatusLine
	}
	for i := 0; i < len(reason); i++ {
		if !fieldVChar[reason[i]] {
			return ErrStatusLine
		}
	}
	r.Minor = minor
	r.StatusCode = int(code[0]-'0')*100 + int(code[1]-'0')*10 + int(code[2]-'0')
	r.Reason = reason
	return nil
}
