package http

import (
	stdhttp "net/http"

	"github.com/gatehouse-pbx/gatehouse/protocols/http/h1"
	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// request is what the rules look at, from either HTTP version.
type request struct {
	method string
	host   string // Host or :authority
	path   string // the path as received, percent-encoded
	form   h1.Form
}

// admit applies the rules every request must pass, HTTP/1.x and HTTP/2
// alike: no CONNECT; the Host names a service the client's network may
// reach (route resolves it; HTTP/1.x caches it per connection); the path is
// on the service's allowed-URL list. A refusal is reported and its status
// returned. A request that passes is counted as forwarded by the caller,
// once it has a target connection (a failed dial counts as refused only).
func admit(pc *proxy.Conn, req request, route func(host string) (*proxy.Route, error)) (*proxy.Route, int) {
	if req.method == stdhttp.MethodConnect {
		pc.Report("", proxy.Refuse(proxy.ReasonMethod, "", nil))
		return nil, stdhttp.StatusMethodNotAllowed
	}
	pc.SetIdentity(req.host)
	r, err := route(HostKey(req.host))
	if err != nil {
		switch proxy.AsRefusal(err).Reason {
		case proxy.ReasonNetwork:
			return nil, stdhttp.StatusForbidden
		case proxy.ReasonUnavailable:
			return nil, stdhttp.StatusServiceUnavailable // no agent tunnel serves it now
		}
		return nil, stdhttp.StatusMisdirectedRequest
	}
	if req.form == h1.AsteriskForm && r.Service.Allow.URLs != nil {
		pc.Report(r.Service.Name, &proxy.Refusal{Reason: proxy.ReasonURL, Err: refusedPath("*"), Subject: "*"})
		return nil, stdhttp.StatusForbidden
	}
	if req.form != h1.AsteriskForm && !URLAllowed(r.Service.Allow.URLs, req.path) {
		pc.Report(r.Service.Name, &proxy.Refusal{Reason: proxy.ReasonURL, Err: refusedPath(req.path), Subject: req.path})
		return nil, stdhttp.StatusForbidden
	}
	return r, 0
}

// refuse answers with the bare status: nothing about the inside.
func refuse(w stdhttp.ResponseWriter, status int) {
	w.Header().Set("Connection", "close")
	stdhttp.Error(w, stdhttp.StatusText(status), status)
}
