package tunnel

import "time"

// The edge's windows, for the external tests' bounds.
const (
	StreamWindow = streamWindow
	TunnelWindow = tunnelWindow
)

// SetStallTimeout sets the edge's stall timeout for tunnels made from now
// on, and returns the one before.
func SetStallTimeout(d time.Duration) time.Duration {
	old := stallTimeout
	stallTimeout = d
	return old
}
