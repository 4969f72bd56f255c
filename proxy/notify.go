package proxy

import (
	"net"
	"syscall"

	"github.com/gatehouse-pbx/gatehouse/proxy/netpoll"
	"github.com/gatehouse-pbx/gatehouse/proxy/sockio"
)

// ReadNotifier is a net.Conn that is no socket (the epoll poller cannot
// wait for it) but can say when it is readable: an agent tunnel's stream.
// The framed relay and Conn.Park wait for such a conn without a goroutine,
// as they do for a TCP socket.
//
// NotifyReadable arranges for fn to be called once, when a Read would not
// block (bytes, the end of the stream, an error or a Close), and reports
// true; false: the conn cannot notify, and the caller waits itself. fn may
// run on any goroutine, also before NotifyReadable returns, and must not
// block. A later call replaces a callback that has not run yet.
type ReadNotifier interface {
	NotifyReadable(fn func()) bool
}

// waitable is how a quiet conn is waited for without a goroutine: its TCP
// socket (through TLS) on the poller, else its own ReadNotifier; neither:
// it cannot be (wait.ok is false), and its reader waits on a goroutine.
type waitable struct {
	sock   syscall.RawConn
	notify ReadNotifier
}

func waitableOf(c net.Conn) waitable {
	w := waitable{sock: sockio.Socket(c)}
	if w.sock == nil {
		w.notify, _ = c.(ReadNotifier)
	}
	return w
}

func (w waitable) ok() bool { return w.sock != nil || w.notify != nil }

// arm starts the wait: ready runs once when the conn is readable (for a
// socket, through p under token). False: the wait could not start (the
// socket closed meanwhile, or the conn cannot notify), and the caller
// reads on to see why.
func (w waitable) arm(p *netpoll.Poller, token uint64, ready func()) bool {
	if w.sock == nil {
		return w.notify.NotifyReadable(ready)
	}
	return p.Arm(w.sock, token) == nil
}
