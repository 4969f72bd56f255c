package sip

import (
	"errors"

	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// Refusals: the package's sentinel errors are proxy.Refusals, so that the
// proxy and RefusalReply switch on their Reason; the Detail names the
// fault in fixed words and never quotes the client's bytes. Find one with
// errors.Is.
var (
	ErrNotSIP          = &proxy.Refusal{Reason: proxy.ReasonProtocol, Detail: "not SIP"}
	ErrNotRequest      = &proxy.Refusal{Reason: proxy.ReasonProtocol, Detail: "SIP response, not a request"}
	ErrMalformed       = &proxy.Refusal{Reason: proxy.ReasonUnreadable, Detail: "malformed SIP message"}
	ErrTooLarge        = &proxy.Refusal{Reason: proxy.ReasonTooLarge, Detail: "SIP message"}
	ErrNoContentLength = &proxy.Refusal{Reason: proxy.ReasonUnreadable, Detail: "no Content-Length"}
	ErrContentLength   = &proxy.Refusal{Reason: proxy.ReasonUnreadable, Detail: "bad Content-Length"}
	ErrNoFrom          = &proxy.Refusal{Reason: proxy.ReasonUnreadable, Detail: "no From header"}
	ErrFromNoHost      = &proxy.Refusal{Reason: proxy.ReasonNoName, Detail: "From without host"}
	ErrNoTo            = &proxy.Refusal{Reason: proxy.ReasonUnreadable, Detail: "no To header"}
	ErrToNoHost        = &proxy.Refusal{Reason: proxy.ReasonNoName, Detail: "To without host"}
	ErrFromBadHost     = &proxy.Refusal{Reason: proxy.ReasonUnreadable, Detail: "From host malformed"}
	ErrToBadHost       = &proxy.Refusal{Reason: proxy.ReasonUnreadable, Detail: "To host malformed"}
	ErrNoCallID        = &proxy.Refusal{Reason: proxy.ReasonUnreadable, Detail: "no Call-ID header"}
	ErrNoCSeq          = &proxy.Refusal{Reason: proxy.ReasonUnreadable, Detail: "no CSeq header"}
	ErrCSeqMethod      = &proxy.Refusal{Reason: proxy.ReasonUnreadable, Detail: "CSeq method is not the request's"}
	// ErrToOtherService refuses a REGISTER whose address of record (To)
	// is in another domain than its From: the registrar would bind an
	// address of a service the connection was not routed to.
	ErrToOtherService = &proxy.Refusal{Reason: proxy.ReasonOtherService, Detail: "REGISTER To domain"}

	// A later request on a bound connection: another From domain than the
	// connection's service, or another user than the certificate's.
	errOtherDomain = &proxy.Refusal{Reason: proxy.ReasonOtherService, Detail: "From domain"}
	errOtherUser   = &proxy.Refusal{Reason: proxy.ReasonIdentity, Detail: "another user than the certificate's"}
)

// A HeaderError is the cause of a refusal for one of the headers a message
// must carry once (From, To, Call-ID, CSeq, Max-Forwards, Content-Length):
// given twice, or unreadable. Find it with errors.As.
type HeaderError struct {
	Header  string // the long name: "From", "Call-ID", ...
	Problem string // "duplicate" or "unreadable"
}

func (e *HeaderError) Error() string { return "sip: " + e.Problem + " " + e.Header + " header" }

// errDuplicate and errUnreadable are the refusals for the singleton
// headers, by singleton index; the header's name is in the detail.
var errDuplicate, errUnreadable = func() (dup, bad [nSingle]error) {
	for i, name := range singleNames {
		for _, p := range []struct {
			problem string
			to      *[nSingle]error
		}{{"duplicate", &dup}, {"unreadable", &bad}} {
			he := &HeaderError{Header: name, Problem: p.problem}
			p.to[i] = &proxy.Refusal{Reason: proxy.ReasonUnreadable, Detail: p.problem + " " + name + " header", Err: he}
		}
	}
	return dup, bad
}()

// headerError returns the HeaderError behind err, or nil.
func headerError(err error) *HeaderError {
	var he *HeaderError
	if errors.As(err, &he) {
		return he
	}
	return nil
}
