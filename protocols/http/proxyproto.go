package http

import (
	"context"
	"crypto/tls"
	"net"
	stdhttp "net/http"
	"time"
)

// HTTP/2 requests go through net/http's Transport (h2.go), which pools
// target connections by address for every client. A target connection of
// a service with proxy_protocol starts with one client's PROXY header, so
// those requests take a transport of their own that keeps no connection
// alive: each request dials, writes its client's header, and closes. The
// HTTP/1 loop does the same through proxy.Conn.Dial (exchange.connect).

// byProxyProtocol sends a request to pp when its route's service has
// proxy_protocol, to plain otherwise.
type byProxyProtocol struct {
	plain, pp stdhttp.RoundTripper
}

func (b byProxyProtocol) RoundTrip(r *stdhttp.Request) (*stdhttp.Response, error) {
	if rt, ok := r.Context().Value(routeKey{}).(*routed); ok && rt.route.ProxyProtocol() {
		return b.pp.RoundTrip(r)
	}
	return b.plain.RoundTrip(r)
}

// newProxyProtocolTransport is the transport for routes with
// proxy_protocol: HTTP/1.1 towards the target (an HTTP/2 connection would
// be shared by streams), no keep-alive, and the header of the request's
// client written first on every connection it dials.
func newProxyProtocolTransport(dialTimeout time.Duration, targetTLS *tls.Config) *stdhttp.Transport {
	d := &net.Dialer{Timeout: dialTimeout}
	return &stdhttp.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			rt, ok := ctx.Value(routeKey{}).(*routed)
			if !ok {
				return nil, errNoRoute
			}
			hdr, err := rt.e.pc.ProxyHeader(rt.route)
			if err != nil {
				return nil, err
			}
			conn, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			conn.SetWriteDeadline(time.Now().Add(dialTimeout))
			if _, err := conn.Write(hdr); err != nil {
				conn.Close()
				return nil, err
			}
			conn.SetWriteDeadline(time.Time{})
			return conn, nil
		},
		TLSClientConfig:     targetTLS,
		TLSHandshakeTimeout: dialTimeout,
		DisableKeepAlives:   true,
		TLSNextProto:        map[string]func(string, *tls.Conn) stdhttp.RoundTripper{},
	}
}
