package http

import (
	"errors"
	"strconv"
	"strings"

	"github.com/gatehouse-pbx/gatehouse/protocols/http/h1"
)

// switchProtocols passes a 101 answer to an upgrade request (WebSocket)
// on, then hands both connections to the proxy's relay, with the stream
// protocols' idle timeout: a WebSocket whose peers both went silent (myPBX
// pings its own) holds two sockets for nothing. The connection is the
// upgraded protocol's from then on.
func (x *exchange) switchProtocols(resp *h1.Response) bool {
	c, tc := x.c, x.tc
	defer tc.close()
	tc.restoreDeadline() // not awaitTarget's watch: the relay reads it raw
	c.cr.rearm = nil
	if x.body != nil {
		c.stopBody(x.body, tc)
	}
	want, _ := x.req.Header.Get("Upgrade")
	got, _ := resp.Header.Get("Upgrade")
	if !strings.EqualFold(want, got) {
		c.targetError(x.route, errors.New("switching protocols to "+strconv.Quote(got)+" when "+strconv.Quote(want)+" was asked"))
		c.writeError(502, true, false)
		return false
	}
	writeStatusLine(c.bw, resp.StatusCode, resp.Reason)
	h1.WriteFields(c.bw, resp.Header, nil)
	c.bw.WriteString("Connection: Upgrade\r\n")
	h1.WriteField(c.bw, "Upgrade", got)
	c.bw.WriteString("\r\n")
	// What the target sent after its 101 goes to the client first, what
	// the client sent after its request to the target.
	if n := tc.br.Buffered(); n > 0 {
		b, _ := tc.br.Peek(n)
		c.bw.Write(b)
	}
	if c.bw.Flush() != nil {
		return false
	}
	var first []byte
	if n := c.br.Buffered(); n > 0 {
		b, _ := c.br.Peek(n)
		first = append([]byte(nil), b...)
	}
	first = append(first, c.cr.stash...) // read by awaitTarget's watcher, after those
	c.pc.Relay(tc.conn, x.route.Service.Name, first)
	return false
}
