package http

import (
	"context"
	"errors"
	"net"
	stdhttp "net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/protocols/http/h1"
	"github.com/gatehouse-pbx/gatehouse/proxy"
)

type routeKey struct{}

// routed is what ServeHTTP decided, for the reverse proxy's hooks.
type routed struct {
	e         *entry
	route     *proxy.Route
	forwarded sync.Once
}

// trace counts the request as forwarded once the transport has a target
// connection (new or pooled), and tells the proxy of the transport's
// successful dials (its failures reach proxyError).
func (rt *routed) trace() *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { rt.forwarded.Do(func() { rt.e.pc.Forwarded(rt.route) }) },
		ConnectDone: func(_, _ string, err error) {
			if err == nil {
				rt.e.pc.Dialed(rt.route, nil)
			}
		},
	}
}

// serveHTTP routes one HTTP/2 request (h1.go does HTTP/1.x): Host → service, the allowed networks and
// URLs, then the reverse proxy. Refusals say as little as possible.
func (h *Handler) serveHTTP(g *generation, w stdhttp.ResponseWriter, r *stdhttp.Request) {
	e, ok := r.Context().Value(ctxKey{}).(*entry)
	if !ok {
		h.log.Error("request without connection", "err", errNoEntry)
		stdhttp.Error(w, "Internal Server Error", stdhttp.StatusInternalServerError)
		return
	}
	defer func() {
		if e.hijacked.Load() {
			// An upgraded connection ends when the reverse proxy's copy does.
			e.finish()
		}
	}()
	if e.pc.Blocked() {
		refuse(w, stdhttp.StatusForbidden) // blocked while the connection was open
		return
	}
	if err := checkAuthority(r); err != nil {
		e.pc.Report("", proxy.Refuse(proxy.ReasonUnreadable, "", err))
		refuse(w, stdhttp.StatusBadRequest)
		return
	}
	route, status := admit(e.pc, request{method: r.Method, host: r.Host, path: rawPath(r)},
		func(host string) (*proxy.Route, error) { return e.pc.Route(host, "") })
	if route == nil {
		refuse(w, status)
		return
	}
	if r.ContentLength != 0 {
		// The body must arrive in time, as on HTTP/1.x (see bodyCopy).
		d := e.pc.Table.Config.Limits.BodyTimeout
		if d > 0 {
			if r.ContentLength > 0 {
				d += time.Duration(r.ContentLength/minBodyRate) * time.Second
			}
			stdhttp.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
		}
	}
	if ref := e.pc.Available(route); ref != nil {
		refuse(w, stdhttp.StatusServiceUnavailable) // reported by Available
		return
	}
	rt := &routed{e: e, route: route}
	ctx := context.WithValue(r.Context(), routeKey{}, rt)
	ctx = httptrace.WithClientTrace(ctx, rt.trace())
	g.rp.ServeHTTP(w, r.WithContext(ctx))
}

// checkAuthority holds an HTTP/2 request's authority to the rule HTTP/1.x
// requests keep for Host (h1.ValidHost: uri-host [":" port], in ASCII),
// which net/http's HTTP/2 server does not check: it passes any field value,
// bytes above 0x7F included. It also refuses a Host field that names
// another authority than :authority (RFC 9113 8.3.1: a server SHOULD treat
// the request as malformed): forwarded as HTTP/1.1, one of them would be
// lost, and a target that reads the other would see another host than
// gatehouse routed.
func checkAuthority(r *stdhttp.Request) error {
	if !h1.ValidHost(r.Host) {
		return errInvalidAuthority
	}
	for _, h := range r.Header.Values("Host") {
		if !configs.EqualName(h, r.Host) {
			return errOtherHost
		}
	}
	return nil
}

var (
	errInvalidAuthority = errors.New("http2: invalid :authority")
	errOtherHost        = errors.New("http2: Host field differs from :authority")
)

// rewrite points the outgoing request at the route's target. The Host the
// client asked for is kept; X-Forwarded-For gets the client appended.
func (h *Handler) rewrite(pr *httputil.ProxyRequest) {
	rt := pr.In.Context().Value(routeKey{}).(*routed)
	pr.Out.URL.Scheme = "http"
	if rt.route.TLS != nil {
		pr.Out.URL.Scheme = "https"
	}
	pr.Out.URL.Host = rt.route.Addr
	pr.Out.Host = pr.In.Host
	ip := clientIP(rt.e).String()
	if prior := pr.In.Header.Values("X-Forwarded-For"); len(prior) > 0 {
		ip = joinComma(prior) + ", " + ip
	}
	pr.Out.Header.Set("X-Forwarded-For", ip)
	proto := "http"
	if rt.e.pc.Info.TLS != nil {
		proto = "https"
	}
	pr.Out.Header.Set("X-Forwarded-Proto", proto)
	pr.Out.Header.Set("X-Real-IP", clientIP(rt.e).String())
}

// rawPath is the path of an HTTP/2 request as the client sent it
// (percent-encoded), which the allowed-URL rule reads.
func rawPath(r *stdhttp.Request) string {
	p := r.RequestURI
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	return p
}

func joinComma(vs []string) string {
	if len(vs) == 1 {
		return vs[0]
	}
	s := vs[0]
	for _, v := range vs[1:] {
		s += ", " + v
	}
	return s
}

// modifyResponse reports a target's refusal of credentials.
func (h *Handler) modifyResponse(resp *stdhttp.Response) error {
	if resp.StatusCode != stdhttp.StatusUnauthorized && resp.StatusCode != stdhttp.StatusForbidden {
		return nil
	}
	in := resp.Request
	if in.Header.Get("Authorization") == "" {
		return nil
	}
	rt := in.Context().Value(routeKey{}).(*routed)
	rt.e.pc.Report(rt.route.Service.Name, credentialsRejected(resp.StatusCode))
	return nil
}

// proxyError answers 502 or 504 when the target cannot be reached, without
// saying which target or why; the log has that.
func (h *Handler) proxyError(w stdhttp.ResponseWriter, r *stdhttp.Request, err error) {
	rt := r.Context().Value(routeKey{}).(*routed)
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return // the client went away
	}
	if errors.Is(err, proxy.ErrNoTunnel) {
		// No agent tunnel any longer (it dropped, or the cluster node
		// holding it died, after the route was chosen): unavailable, and
		// the proxy did not hold it against the client.
		w.WriteHeader(stdhttp.StatusServiceUnavailable)
		return
	}
	status := stdhttp.StatusBadGateway
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		status = stdhttp.StatusGatewayTimeout
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		if dialStatus(rt.e.pc.Dialed(rt.route, err)) == stdhttp.StatusServiceUnavailable { // reported by Dialed
			status = stdhttp.StatusServiceUnavailable
		}
	} else {
		h.log.Warn("target error", "client", clientIP(rt.e), "type", rt.e.pc.Info.Type.Name,
			"service", rt.route.Service.Name, "target", rt.route.Addr, "err", err)
	}
	w.WriteHeader(status)
}
