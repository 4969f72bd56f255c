package proxy

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
