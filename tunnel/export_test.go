package tunnel

// The edge's windows, for the external tests' bounds.
const (
	StreamWindow = streamWindow
	TunnelWindow = tunnelWindow
)
