package main

import (
	"sync/atomic"
	"time"

	"github.com/gatehouse-pbx/gatehouse/protocols"
	"github.com/gatehouse-pbx/gatehouse/proxy"
	"github.com/gatehouse-pbx/gatehouse/turn"
)

// turnHandler gives the STUN/TURN streams that listen.any detected (types
// "turn" and "turns") to the TURN server running now; a reload that
// restarts TURN hands later streams to the new one.
type turnHandler struct{ relay *atomic.Pointer[turn.Server] }

func (h turnHandler) ServeConn(c *proxy.Conn) {
	r := h.relay.Load()
	if r == nil {
		c.Report("", proxy.Refuse(proxy.ReasonProtocol, "turn is off (turn.listen)", nil))
		return
	}
	// The first-packet deadline ends here: turn.allocate_timeout and the
	// lifetimes bound the stream from now on, as on turn.listen.
	c.Conn.SetDeadline(time.Time{})
	r.ServeConn(c.Conn)
}

// handlers are the protocols' handlers and TURN's for listen.any.
func (a *app) handlers() map[string]proxy.Handler {
	hs := protocols.Handlers(a.log)
	hs[proxy.TypeTURN.Name] = turnHandler{&a.relay}
	hs[proxy.TypeTURNS.Name] = turnHandler{&a.relay}
	return hs
}
