package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"slices"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/proxy/detect"
	"github.com/gatehouse-pbx/gatehouse/proxy/sockio"
)

// listen.any: one listener for every protocol. The listener reads the
// first bytes under the first-packet deadline the listener already set,
// lets proxy/detect name the protocol, terminates TLS when it is TLS
// (choosing by ALPN, or else by the first bytes inside), and then hands
// the connection to the Handler of the detected service type exactly as
// that type's own listener would: Info.Type is the detected type, so
// allow.networks and the stats per type apply. The bytes read are replayed
// (replayConn) to whoever reads next.

// anyPeekMax bounds the bytes read to tell the protocol: a ClientHello
// with many extensions, or split across records, fits; a request line
// that is longer is refused by detect before this.
const anyPeekMax = 16 << 10

// The ALPN names listen.any dispatches on before looking inside TLS.
var (
	alpnHTTP = []string{"h2", "http/1.1"}
	alpnTURN = "stun.turn" // RFC 7443
)

// plainTypes and tlsTypes map a detected protocol to its service type
// (TURN and TURN over TLS are the Handlers named "turn" and "turns").
var (
	plainTypes = map[detect.Protocol]string{detect.HTTP: "http", detect.SIP: "sip", detect.LDAP: "ldap", detect.H323: "h323", detect.STUN: "turn"}
	tlsTypes   = map[detect.Protocol]string{detect.HTTP: "https", detect.SIP: "sips", detect.LDAP: "ldaps", detect.H323: "h323s", detect.STUN: "turns"}
)

// Service types for TURN on listen.any; ServeConn of their Handler gets
// the STUN stream, decrypted for "turns".
var (
	TypeTURN  = configs.ServiceType{Name: "turn", Family: "turn"}
	TypeTURNS = configs.ServiceType{Name: "turns", Family: "turn", TLS: true}
)

func lookupAnyType(name string) configs.ServiceType {
	switch name {
	case TypeTURN.Name:
		return TypeTURN
	case TypeTURNS.Name:
		return TypeTURNS
	}
	st, _ := configs.LookupType(name)
	return st
}

// replayConn returns buf before reading on from the Conn under it.
type replayConn struct {
	net.Conn
	buf []byte
}

func (r *replayConn) Read(p []byte) (int, error) {
	if len(r.buf) > 0 {
		n := copy(p, r.buf)
		r.buf = r.buf[n:]
		return n, nil
	}
	return r.Conn.Read(p)
}

// detectAny names the connection's protocol and prepares c for its
// Handler, which it returns; a refusal is reported here, once.
func (l *listener) detectAny(c *Conn) (Handler, bool) {
	first, p, ok := c.peek(c.Conn, detect.Detect)
	if !ok {
		return nil, false
	}
	c.Conn = &replayConn{Conn: c.Conn, buf: first}
	typ := plainTypes[p]
	if p == detect.TLS {
		if typ, ok = c.anyTLS(); !ok {
			return nil, false
		}
	}
	c.Info.Type = lookupAnyType(typ)
	h := l.srv.opts.Handlers[typ]
	if h == nil {
		c.Report("", Refuse(ReasonProtocol, typ+" not served on listen.any", nil))
		return nil, false
	}
	return h, true
}

// anyTLS terminates TLS for listen.any and returns the service type: by
// ALPN for HTTP and TURN, else by the first bytes inside.
func (c *Conn) anyTLS() (string, bool) {
	tc := tls.Server(sockio.Wrap(c.Conn), c.Table.anyTLS)
	ctx, cancel := context.WithTimeout(context.Background(), c.Table.Config.Limits.FirstPacketTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		c.reportHandshake(err)
		return "", false
	}
	cs := tc.ConnectionState()
	c.Conn = tc
	c.Info.TLS = &cs
	c.Info.VerifiedCN = c.Table.verifiedCN(&cs)
	switch {
	case slices.Contains(alpnHTTP, cs.NegotiatedProtocol):
		return "https", true // net/http's HTTP/2 needs the *tls.Conn itself
	case cs.NegotiatedProtocol == alpnTURN:
		return "turns", true
	case acmeHandshake(&cs):
		return "", false // a TLS-ALPN-01 validation: the handshake was all of it
	case cs.NegotiatedProtocol == alpnAgent:
		if s := c.Table.agentServer(); s != nil {
			s.ServeTLS(tc) // the tunnel sets its own deadlines
		}
		return "", false // served: the tunnel has ended
	}
	inner, p, ok := c.peek(tc, detect.DetectInner)
	if !ok {
		return "", false
	}
	c.Conn = &replayConn{Conn: tc, buf: inner}
	return tlsTypes[p], true
}

// peek reads from r until rule decides, under the deadline already set and
// within anyPeekMax. Every failure is reported: nothing or part of a
// message before the deadline or EOF, or bytes no rule accepts.
func (c *Conn) peek(r io.Reader, rule func([]byte) (detect.Protocol, detect.Result)) ([]byte, detect.Protocol, bool) {
	buf := make([]byte, 0, 2048)
	for {
		if len(buf) == cap(buf) {
			if len(buf) >= anyPeekMax {
				c.Report("", Refuse(ReasonTooLarge, "first bytes on listen.any", nil))
				return nil, 0, false
			}
			buf = slices.Grow(buf, min(anyPeekMax, 2*cap(buf))-len(buf))
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if n > 0 {
			switch p, res := rule(buf); res {
			case detect.Yes:
				return buf, p, true
			case detect.No:
				c.Report("", Refuse(ReasonProtocol, "no protocol of listen.any", nil))
				return nil, 0, false
			}
		}
		if err != nil {
			c.Report("", Refuse(firstReadFailure(err, len(buf)), "listen.any", err))
			return nil, 0, false
		}
	}
}
