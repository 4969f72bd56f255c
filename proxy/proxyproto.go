package proxy

import (
	"crypto/tls"
	"net"
	"strings"

	"github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
)

// A service with proxy_protocol: v2 gets a PROXY protocol v2 header first
// on every target connection, before any TLS or StartTLS towards it: the
// target learns the client's address and port without parsing a protocol
// (X-Forwarded-For, Via). The header is one client's, so a connection that
// carries it never serves another client (protocols/http does not pool them).

// ProxyProtocol reports whether connections to r's target start with a
// PROXY protocol header.
func (r *Route) ProxyProtocol() bool { return r.Service.ProxyProtocol == "v2" }

// ProxyHeader is the PROXY protocol v2 header for this client's connection
// to r's target: source the client's address and port, destination the
// address the client reached gatehouse on; TLVs: AUTHORITY (the SNI, or for
// HTTP the Host, which is the service's name), ALPN, and when gatehouse
// terminated TLS, the SSL TLV (version, cipher, and the CN of a client
// certificate that chains to tls.client_cas).
func (c *Conn) ProxyHeader(r *Route) ([]byte, error) {
	h := proxyproto.HeaderProxyFromAddrs(2, net.TCPAddrFromAddrPort(c.Info.Client), c.raw.LocalAddr())
	var tlvs []proxyproto.TLV
	authority := ""
	if cs := c.Info.TLS; cs != nil && cs.ServerName != "" {
		authority = cs.ServerName
	} else if c.Info.Type.Family == "http" {
		authority = strings.ToLower(r.Service.Name)
	}
	if authority != "" {
		tlvs = append(tlvs, proxyproto.TLV{Type: proxyproto.PP2_TYPE_AUTHORITY, Value: []byte(authority)})
	}
	if cs := c.Info.TLS; cs != nil {
		if cs.NegotiatedProtocol != "" {
			tlvs = append(tlvs, proxyproto.TLV{Type: proxyproto.PP2_TYPE_ALPN, Value: []byte(cs.NegotiatedProtocol)})
		}
		ssl := tlvparse.PP2SSL{
			Client: tlvparse.PP2_BITFIELD_CLIENT_SSL,
			Verify: 1, // non-zero: no verified client certificate
			TLV: []proxyproto.TLV{
				{Type: proxyproto.PP2_SUBTYPE_SSL_VERSION, Value: []byte(tlsVersionName(cs.Version))},
				{Type: proxyproto.PP2_SUBTYPE_SSL_CIPHER, Value: []byte(tls.CipherSuiteName(cs.CipherSuite))},
			},
		}
		if len(cs.PeerCertificates) > 0 {
			ssl.Client |= tlvparse.PP2_BITFIELD_CLIENT_CERT_CONN
		}
		if c.Info.VerifiedCN != "" {
			ssl.Verify = 0
			ssl.TLV = append(ssl.TLV, proxyproto.TLV{Type: proxyproto.PP2_SUBTYPE_SSL_CN, Value: []byte(c.Info.VerifiedCN)})
		}
		t, err := ssl.Marshal()
		if err != nil {
			return nil, err
		}
		tlvs = append(tlvs, t)
	}
	if err := h.SetTLVs(tlvs); err != nil {
		return nil, err
	}
	return h.Format()
}

// tlsVersionName is the version as OpenSSL names it ("TLSv1.3"), the form
// HAProxy and nginx put in the SSL TLV and their logs.
func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return tls.VersionName(v)
}
