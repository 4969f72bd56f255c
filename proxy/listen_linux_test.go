package proxy

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
)

// Accepted connections have the keep-alive the listening socket was given:
// no per-connection setsockopt sets it any more.
func TestAcceptedConnsInheritKeepAlive(t *testing.T) {
	ln, err := listenTCP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, a := testpeer.TCPPair(t, ln)
	rc, err := a.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][3]int{
		"SO_KEEPALIVE":  {unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		"TCP_KEEPIDLE":  {unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, int(keepAliveIdle.Seconds())},
		"TCP_KEEPINTVL": {unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, int(keepAliveInterval.Seconds())},
		"TCP_KEEPCNT":   {unix.IPPROTO_TCP, unix.TCP_KEEPCNT, keepAliveCount},
	}
	for name, o := range want {
		var got int
		var gerr error
		if err := rc.Control(func(fd uintptr) { got, gerr = unix.GetsockoptInt(int(fd), o[0], o[1]) }); err != nil {
			t.Fatal(err)
		}
		if gerr != nil || got != o[2] {
			t.Errorf("accepted socket %s = %d (%v), want %d", name, got, gerr, o[2])
		}
	}
}
