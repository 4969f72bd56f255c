package proxy

import (
	"context"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// listenTCP opens a service port whose accepted connections have TCP
// keep-alive on with Go's defaults (a probe after keepAliveIdle quiet, then
// every keepAliveInterval, keepAliveCount of them): a phone that vanished
// behind its NAT frees its connection within minutes even when limits
// allow hours of quiet. Linux copies these options from the listening
// socket to every accepted one, so they are set once here instead of four
// setsockopt calls per accepted connection (net's default), which were
// the largest part of a short connection's system calls after the
// transfer itself.
func listenTCP(addr string) (net.Listener, error) {
	lc := net.ListenConfig{
		KeepAlive: -1, // inherited, below
		Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				for _, o := range [...]struct{ level, name, value int }{
					{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
					{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, int(keepAliveIdle.Seconds())},
					{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, int(keepAliveInterval.Seconds())},
					{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, keepAliveCount},
				} {
					if serr = unix.SetsockoptInt(int(fd), o.level, o.name, o.value); serr != nil {
						return
					}
				}
			})
			if err != nil {
				return err
			}
			return serr
		},
	}
	return lc.Listen(context.Background(), "tcp", addr)
}
