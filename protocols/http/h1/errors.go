package h1

import (
	"errors"
	"net/http"
)

// Errors of malformed messages. Each says what was wrong, never echoes the
// peer's bytes (callers log the peer and the service).
var (
	ErrHeadTooLarge     = errors.New("h1: message head too large")
	ErrLineEnding       = errors.New("h1: line not ended by CRLF")
	ErrRequestLine      = errors.New("h1: malformed request line")
	ErrStatusLine       = errors.New("h1: malformed status line")
	ErrVersion          = errors.New("h1: unsupported HTTP version")
	ErrMethod           = errors.New("h1: malformed method")
	ErrTarget           = errors.New("h1: malformed request target")
	ErrFieldName        = errors.New("h1: invalid field name")
	ErrFieldValue       = errors.New("h1: invalid character in field value")
	ErrObsFold          = errors.New("h1: obsolete line folding")
	ErrHost             = errors.New("h1: missing, repeated or malformed Host")
	ErrHostMismatch     = errors.New("h1: Host differs from the request target's authority")
	ErrContentLength    = errors.New("h1: invalid or repeated Content-Length")
	ErrTransferEncoding = errors.New("h1: unsupported Transfer-Encoding")
	ErrFramingConflict  = errors.New("h1: both Transfer-Encoding and Content-Length")
	ErrChunk            = errors.New("h1: malformed chunk")
	ErrTrailer          = errors.New("h1: malformed trailer section")
	ErrBodyLength       = errors.New("h1: body shorter than its framing")
)

// Status is the status code that answers a request refused with err:
// 431 for a head too large, 505 for a version, 400 for anything else.
func Status(err error) int {
	switch {
	case errors.Is(err, ErrHeadTooLarge):
		return http.StatusRequestHeaderFieldsTooLarge
	case errors.Is(err, ErrVersion):
		return http.StatusHTTPVersionNotSupported
	}
	return http.StatusBadRequest
}
