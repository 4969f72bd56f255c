package turn

import "errors"

var (
	// ErrConfig wraps every configuration error New reports.
	ErrConfig = errors.New("turn: invalid configuration")

	errClosed     = errors.New("turn: server closed")
	errSTUNOnly   = errors.New("turn: no accounts and no secret configured, STUN only")
	errTotalQuota = errors.New("turn: allocation limit reached")
)
