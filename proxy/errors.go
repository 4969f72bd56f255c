package proxy

import "errors"

// The package's errors. Refusals (refusal.go) are the errors about a
// client's request; these are about the proxy itself.
var (
	// ErrNeedMore is returned by Sniff and Watcher.Frame when the bytes so
	// far do not hold a complete enough message to decide.
	ErrNeedMore = errors.New("proxy: need more bytes")
	// ErrServerClosed is returned by Reload after Shutdown.
	ErrServerClosed = errors.New("proxy: server closed")

	errBlocked       = errors.New("proxy: client is blocked")
	errNoStartTLS    = errors.New("proxy: in-band StartTLS is not supported by this protocol")
	errIdle          = errors.New("proxy: idle timeout")
	errParked        = errors.New("proxy: direction parked")    // relay-internal: nothing pending, waits on the poller
	errWouldBlock    = errors.New("proxy: nothing to read yet") // relay-internal
	errEmptyMessage  = errors.New("proxy: watcher framed an empty message")
	errWatcherClosed = errors.New("proxy: closed by watcher")
	errNestedTLS     = errors.New("proxy: tls upgrade inside tls")
	errHeadTooLarge  = errors.New("proxy: message head exceeds first_packet_max")
	errALPNNotServed = errors.New("proxy: application protocol not served on listen.any")
)
