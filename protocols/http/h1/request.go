package h1

import (
	"bufio"
	"strings"
)

// Form is the form of a request target (RFC 9112 section 3.2).
type Form uint8

const (
	OriginForm    Form = iota // "/path?query"
	AbsoluteForm              // "http://authority/path?query"
	AuthorityForm             // "host:port", CONNECT only
	AsteriskForm              // "*", OPTIONS only
)

// Chunked is the ContentLength of a message whose body is chunked.
const Chunked = -1

// Request is a request head as gatehouse read it.
type Request struct {
	Method string
	// Target is the request target as received.
	Target string
	Form   Form
	// Path is the target's path as received (percent-encoded), "/" for an
	// absolute-form target without one, "" for the authority and asterisk
	// forms. Query is what follows '?', without it; HasQuery tells an empty
	// query from none.
	Path     string
	Query    string
	HasQuery bool
	// Authority is the authority of an absolute- or authority-form target.
	Authority string
	// Minor is the HTTP/1 minor version: 0 or 1.
	Minor int
	// Host is the Host field; for HTTP/1.0 without one, the absolute
	// form's authority or "".
	Host string
	// Header holds every field but Host, Content-Length and
	// Transfer-Encoding.
	Header Header
	// ContentLength is the body's length, or Chunked.
	ContentLength int64
	// Close: the client asked to close after this request (Connection:
	// close, or HTTP/1.0 without keep-alive).
	Close bool

	alloc *requestAlloc // where r lives, for Release; nil: not pooled
}

// Release gives the request's memory back for a later request to reuse:
// neither r nor its Header may be used after it (its strings may: they
// are the head's own). Releasing twice, or a request not from
// ReadRequest, does nothing.
func (r *Request) Release() {
	if a := r.alloc; a != nil {
		*a = requestAlloc{}
		requestAllocs.Put(a)
	}
}

// RequestURI is the target to write towards an origin server: the origin
// form (an absolute-form target is reduced to its path and query, RFC
// 9112 section 3.2.2), or "*".
func (r *Request) RequestURI() string {
	switch r.Form {
	case AsteriskForm:
		return "*"
	case OriginForm:
		return r.Target
	}
	if r.HasQuery {
		return r.Path + "?" + r.Query
	}
	return r.Path
}

// Upgrade reports whether the request asks to switch protocols
// (WebSocket): HTTP/1.1 with Upgrade named in Connection.
func (r *Request) Upgrade() bool {
	return r.Minor == 1 && r.Header.Has("Upgrade") && r.Header.HasToken("Connection", "upgrade")
}

// ReadRequest reads one request head from br, at most max bytes of it.
// The body, if any, is left in br: read it with NewBody(br,
// req.ContentLength). Empty lines before the request line are refused, as
// net/http does; the connection loop skips the CRLF some old clients send
// after a body (RFC 9112 section 2.2).
func ReadRequest(br *bufio.Reader, max int) (*Request, error) {
	head, err := readHead(br, max)
	if err != nil {
		return nil, err
	}
	return parseRequest(head)
}

// ParseRequest parses a whole request head (up to and including its empty
// line): for tests and fuzzing.
func ParseRequest(head string) (*Request, error) { return parseRequest(head) }

func parseRequest(head string) (*Request, error) {
	line, rest, err := nextLine(head)
	if err != nil {
		return nil, err
	}
	var (
		r *Request
		h Header
	)
	if n := fieldCount(rest); n <= inlineFields {
		a := requestAllocs.Get().(*requestAlloc)
		r, h = &a.r, a.f[:0]
		r.alloc = a
	} else {
		r, h = new(Request), make(Header, 0, n)
	}
	if err := r.parseLine(line); err != nil {
		return nil, err
	}
	var (
		hosts int
		f     framing
	)
	r.Header, err = parseFields(rest, h, func(name, value string) (bool, error) {
		if len(name) == 4 && equalFold(name, "Host") {
			hosts++
			r.Host = value
			return true, nil
		}
		return f.field(name, value)
	})
	if err != nil {
		return nil, err
	}
	switch {
	case hosts > 1, hosts == 0 && r.Minor == 1, hosts == 1 && !ValidHost(r.Host):
		return nil, ErrHost
	case r.Form == AbsoluteForm && hosts == 0:
		r.Host = r.Authority
	case r.Form == AbsoluteForm && !equalFold(r.Host, r.Authority):
		return nil, ErrHostMismatch
	}
	if err := f.check(r.Minor); err != nil {
		return nil, err
	}
	r.ContentLength = f.length
	if f.codings > 0 {
		r.ContentLength = Chunked
	}
	if r.Minor == 0 {
		r.Close = !r.Header.HasToken("Connection", "keep-alive")
	} else {
		r.Close = r.Header.HasToken("Connection", "close")
	}
	return r, nil
}

// parseLine reads "method SP request-target SP HTTP-version", with single
// spaces only.
func (r *Request) parseLine(line string) error {
	method, rest, ok := strings.Cut(line, " ")
	if !ok {
		return ErrRequestLine
	}
	target, version, ok := strings.Cut(rest, " ")
	if !ok || target == "" {
		return ErrRequestLine
	}
	// The version first: an HTTP/2 preface ("PRI * HTTP/2.0") is told
	// apart by it (505), whatever its target.
	minor, err := parseVersion(version)
	if err != nil {
		if err == errMalformedVersion {
			return ErrRequestLine
		}
		return err
	}
	if !isToken(method) {
		return ErrMethod
	}
	r.Method, r.Target, r.Minor = method, target, minor
	return r.parseTarget()
}

// parseTarget sorts the target into its form and checks its characters.
func (r *Request) parseTarget() error {
	t := r.Target
	for i := 0; i < len(t); i++ {
		if !targetChar[t[i]] {
			return ErrTarget
		}
	}
	switch {
	case t[0] == '/':
		r.Form = OriginForm
		return r.splitPath(t)
	case t == "*":
		if r.Method != "OPTIONS" {
			return ErrTarget
		}
		r.Form = AsteriskForm
		return nil
	case r.Method == "CONNECT":
		if !ValidHost(t) || strings.IndexByte(t, ':') < 0 {
			return ErrTarget
		}
		r.Form, r.Authority = AuthorityForm, t
		return nil
	}
	var rest string
	switch {
	case len(t) > 7 && equalFold(t[:7], "http://"):
		rest = t[7:]
	case len(t) > 8 && equalFold(t[:8], "https://"):
		rest = t[8:]
	default:
		return ErrTarget
	}
	end := strings.IndexAny(rest, "/?")
	if end < 0 {
		end = len(rest)
	}
	r.Form, r.Authority = AbsoluteForm, rest[:end]
	if !ValidHost(r.Authority) {
		return ErrTarget
	}
	pq := rest[end:]
	if pq == "" || pq[0] == '?' {
		pq = "/" + pq
	}
	return r.splitPath(pq)
}

// splitPath splits path and query; the path's percent-encodings must be
// well formed (a query's are the application's business).
func (r *Request) splitPath(pq string) error {
	path, query, hasQuery := strings.Cut(pq, "?")
	for i := 0; i < len(path); i++ {
		if path[i] == '%' && (i+2 >= len(path) || hexVal[path[i+1]] < 0 || hexVal[path[i+2]] < 0) {
			return ErrTarget
		}
	}
	r.Path, r.Query, r.HasQuery = path, query, hasQuery
	return nil
}
