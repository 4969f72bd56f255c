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
)

// Reasons a Watcher gives for a later request it answers itself.
const (
	reasonOtherService = "From domain of another service"
	reasonOtherUser    = "REGISTER for another user"
)
