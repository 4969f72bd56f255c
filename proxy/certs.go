package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
)

// CertSource is where certificates come from besides tls.certificates:
// tls.acme (*acme.Manager implements it).
type CertSource interface {
	// GetCertificate answers a TLS-ALPN-01 challenge, or returns the
	// certificate of a name Manages.
	GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error)
	// Manages reports whether the source has (or is obtaining) a
	// certificate for name.
	Manages(name string) bool
	// HandleHTTPChallenge answers an HTTP-01 challenge request; false
	// means r is not one.
	HandleHTTPChallenge(w http.ResponseWriter, r *http.Request) bool
}

// alpnACME is the ALPN protocol of TLS-ALPN-01 (RFC 8737).
const alpnACME = "acme-tls/1"

// isACMEChallenge: RFC 8737 §3, the validation server offers acme-tls/1
// alone, with the SNI of the name being validated.
func isACMEChallenge(hi *tls.ClientHelloInfo) bool {
	return hi.ServerName != "" && len(hi.SupportedProtos) == 1 && hi.SupportedProtos[0] == alpnACME
}

// useCerts makes the Table's TLS configurations take certificates from src
// too: a configured certificate whose names cover the SNI wins; else a name
// src manages gets src's; else crypto/tls's choice among the configured
// (the first). A TLS-ALPN-01 challenge on https or any gets src's answer.
func (t *Table) useCerts(src CertSource) {
	if src == nil {
		return
	}
	t.certs = src
	get := func(hi *tls.ClientHelloInfo) (*tls.Certificate, error) {
		name := configs.FoldName(strings.TrimSuffix(hi.ServerName, "."))
		for i := range t.Config.TLS.Certificates {
			ck := &t.Config.TLS.Certificates[i]
			if ck.Loaded.Leaf != nil && ck.Loaded.Leaf.VerifyHostname(name) == nil {
				return &ck.Loaded, nil
			}
		}
		if src.Manages(name) {
			return src.GetCertificate(hi)
		}
		return nil, nil // the first configured, if any
	}
	challenge := &tls.Config{GetCertificate: src.GetCertificate, NextProtos: []string{alpnACME}}
	for typ, sc := range t.serverTLS {
		sc.GetCertificate = get
		if typ == "https" {
			pick := sc.GetConfigForClient // agents (table.go)
			sc.GetConfigForClient = func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
				if isACMEChallenge(hi) {
					return challenge, nil
				}
				if pick != nil {
					return pick(hi)
				}
				return nil, nil
			}
		}
	}
	for _, c := range t.anyInner {
		c.GetCertificate = get
	}
	pick := t.anyTLS.GetConfigForClient
	t.anyTLS.GetConfigForClient = func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
		if isACMEChallenge(hi) {
			return challenge, nil
		}
		return pick(hi)
	}
}

// acmeHandshake reports whether a finished handshake was an ACME
// validation: the validator closes it, and it is no request to serve.
func acmeHandshake(cs *tls.ConnectionState) bool { return cs.NegotiatedProtocol == alpnACME }

// challengePrefix starts every HTTP-01 validation request (RFC 8555 §8.3).
const challengePrefix = "GET /.well-known/acme-challenge/"

// answerHTTPChallenge answers an HTTP-01 validation on a plain HTTP
// connection before any routing (Host names a service only once routed):
// it reads the request head within the first-packet deadline, and when it
// is not a challenge the source knows, leaves what it read to be replayed
// to the HTTP handler. It reports whether it answered.
func (c *Conn) answerHTTPChallenge() bool {
	src := c.Table.certs
	if src == nil {
		return false
	}
	buf := make([]byte, 0, 1024)
	defer func() { c.Conn = &replayConn{Conn: c.Conn, buf: buf} }()
	for {
		n := min(len(buf), len(challengePrefix))
		if string(buf[:n]) != challengePrefix[:n] {
			return false // another request: routed as usual
		}
		if bytes.Contains(buf, []byte("\r\n\r\n")) {
			break
		}
		if len(buf) == cap(buf) {
			if len(buf) >= 8192 {
				return false // the HTTP handler refuses it
			}
			buf = slices.Grow(buf, len(buf))
		}
		m, err := c.Conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err != nil && m == 0 {
			return false // the handler reports it
		}
	}
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(buf)))
	if err != nil {
		return false
	}
	w := &challengeWriter{header: http.Header{}}
	if !src.HandleHTTPChallenge(w, req) {
		return false
	}
	c.srv.log.Info("acme: answered http-01 challenge", "client", c.Info.Client.Addr(), "host", req.Host, "status", w.status)
	c.Conn.SetWriteDeadline(time.Now().Add(c.Table.Config.Limits.FirstPacketTimeout))
	w.writeTo(c.Conn)
	buf = nil
	return true
}

// challengeWriter collects certmagic's answer to one challenge request.
type challengeWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *challengeWriter) Header() http.Header { return w.header }
func (w *challengeWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.body.Write(p)
}
func (w *challengeWriter) WriteHeader(status int) { w.status = status }

func (w *challengeWriter) writeTo(c interface{ Write([]byte) (int, error) }) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n",
		w.status, http.StatusText(w.status), w.body.Len())
	b.Write(w.body.Bytes())
	c.Write(b.Bytes())
}
