package sip

import "errors"

// Refusals. Their text is the reason the proxy logs and reports as
// suspicious, so it is short, stable and never quotes the client's bytes.
var (
	ErrNotSIP          = errors.New("not SIP")
	ErrNotRequest      = errors.New("SIP response, not a request")
	ErrMalformed       = errors.New("malformed SIP message")
	ErrTooLarge        = errors.New("SIP message too large")
	ErrNoContentLength = errors.New("no Content-Length")
	ErrContentLength   = errors.New("bad Content-Length")
	ErrNoFrom          = errors.New("no From header")
	ErrFromNoHost      = errors.New("From without host")
	ErrNoTo            = errors.New("no To header")
	ErrToNoHost        = errors.New("To without host")
	ErrNoCallID        = errors.New("no Call-ID header")
	ErrNoCSeq          = errors.New("no CSeq header")
	ErrCSeqMethod      = errors.New("CSeq method is not the request's")
	// ErrToOtherService refuses a REGISTER whose address of record (To)
	// is in another domain than its From: the registrar would bind an
	// address of a service the connection was not routed to.
	ErrToOtherService = errors.New("REGISTER To domain of another service")
)

// A HeaderError refuses a message for one of the headers it must carry
// once (From, To, Call-ID, CSeq, Max-Forwards, Content-Length): given
// twice, or unreadable. Its values are the fixed ones in errDuplicate and
// errUnreadable, so the reason text is stable.
type HeaderError struct {
	Header  string // the long name: "From", "Call-ID", ...
	Problem string // "duplicate" or "unreadable"
}

func (e *HeaderError) Error() string { return e.Problem + " " + e.Header + " header" }

// errDuplicate and errUnreadable are the HeaderErrors, by singleton index.
var errDuplicate, errUnreadable = func() (dup, bad [nSingle]error) {
	for i, name := range singleNames {
		dup[i] = &HeaderError{Header: name, Problem: "duplicate"}
		bad[i] = &HeaderError{Header: name, Problem: "unreadable"}
	}
	return dup, bad
}()

// badRequest are the reasons answered 400: the request itself is at fault.
var badRequest = func() map[string]bool {
	m := map[string]bool{}
	for _, err := range []error{ErrNoFrom, ErrFromNoHost, ErrNoTo, ErrToNoHost, ErrNoCallID, ErrNoCSeq,
		ErrCSeqMethod, ErrNoContentLength, ErrContentLength, ErrMalformed} {
		m[err.Error()] = true
	}
	for i := range nSingle {
		m[errDuplicate[i].Error()] = true
		m[errUnreadable[i].Error()] = true
	}
	return m
}()

// Reasons a Watcher gives for a later request it answers itself.
const (
	reasonOtherService = "From domain of another service"
	reasonOtherUser    = "request for another user than the certificate's"
)
