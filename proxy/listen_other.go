//go:build !linux

package proxy

import (
	"context"
	"net"
)

// listenTCP opens a service port; elsewhere than Linux accepted sockets do
// not inherit keep-alive from the listener, so net sets it on each.
func listenTCP(addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAliveConfig: net.KeepAliveConfig{
		Enable: true, Idle: keepAliveIdle, Interval: keepAliveInterval, Count: keepAliveCount,
	}}
	return lc.Listen(context.Background(), "tcp", addr)
}
