package configs

import (
	"fmt"
	"syscall"
)

var sprintf = fmt.Sprintf

// Descriptors a gatehouse process needs besides client and target
// connections: listeners, the log, the state and configuration files, DNS,
// and the admin port's and whitelisted clients' connections, which
// limits.max_conns does not count. A tenth of the limit, at least 64.
func fileReserve(limit int) int { return max(64, limit/10) }

// FileLimit returns the process's limit on open file descriptors (the soft
// RLIMIT_NOFILE, which Go raises to the hard limit at start), or 0 when it
// cannot be read.
func FileLimit() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur > 1<<30 {
		return 0
	}
	return int(r.Cur)
}

// DefaultMaxConns is limits.max_conns for a descriptor limit: each proxied
// connection holds two descriptors (the client's and the target's), after
// the reserve. 0 (no cap) when the limit is unknown.
func DefaultMaxConns(fileLimit int) int {
	if fileLimit <= 0 {
		return 0
	}
	return max(1, (fileLimit-fileReserve(fileLimit))/2)
}

// DescriptorWarnings says where the connection caps of c let gatehouse run
// out of file descriptors under fileLimit before a cap stops new
// connections: `gatehouse check` prints them and `gatehouse run` logs them.
func DescriptorWarnings(c *Config, fileLimit int) []string {
	if fileLimit <= 0 {
		return nil
	}
	var out []string
	l := c.Limits
	usable := fileLimit - fileReserve(fileLimit)
	switch {
	case l.MaxConns == 0:
		out = append(out, sprintf("limits.max_conns: 0 (no cap) with a descriptor limit of %d: a flood can exhaust descriptors; the default would be %d", fileLimit, DefaultMaxConns(fileLimit)))
	case 2*l.MaxConns > usable:
		out = append(out, sprintf("limits.max_conns: %d connections need up to %d descriptors (client and target), more than the %d of the descriptor limit %d left after a reserve of %d; lower it to %d or raise the limit (LimitNOFILE, ulimit -n)",
			l.MaxConns, 2*l.MaxConns, usable, fileLimit, fileReserve(fileLimit), DefaultMaxConns(fileLimit)))
	}
	if l.MaxConnsPerIP > 0 && l.MaxConns > 0 && l.MaxConnsPerIP > l.MaxConns {
		out = append(out, sprintf("limits.max_conns_per_ip: %d is above limits.max_conns (%d): one client can take every connection", l.MaxConnsPerIP, l.MaxConns))
	}
	if c.TURN.Listen != "" && c.TURN.MaxAllocations > usable {
		out = append(out, sprintf("turn.max_allocations: %d relay sockets are more than the %d descriptors the limit %d leaves", c.TURN.MaxAllocations, usable, fileLimit))
	}
	return out
}
