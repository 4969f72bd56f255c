package ldap

import (
	goldap "github.com/go-ldap/ldap/v3"

	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// Sniff routes a connection by its first LDAPMessage. A BindRequest names
// the service; a StartTLS request on a plain connection is answered here
// and the bind inside TLS routes. Every other first message is refused with
// an error whose text is the reason; RefusalReply turns it into the LDAP
// answer for the client.
func (s *Sniffer) Sniff(first []byte, info *proxy.ConnInfo) (*proxy.Decision, error) {
	n, err := frame(first)
	switch {
	case err != nil:
		return nil, err
	case n > s.maxMessage(info):
		return nil, errTooLarge
	case len(first) < n:
		return nil, proxy.ErrNeedMore
	}
	m, err := decode(first[:n])
	if err != nil {
		return nil, err
	}
	switch {
	case m.is(goldap.ApplicationBindRequest):
		key, err := bindKey(m)
		if err != nil {
			return nil, err
		}
		// bindKey checked the request's shape: its name is the second field.
		return &proxy.Decision{Service: key, Who: m.op.Children[1].Data.String(), Watcher: &watcher{service: key}}, nil
	case m.extendedName() == oidStartTLS:
		if info != nil && info.TLS != nil { // RFC 4513 3.1.1
			return nil, errNestedStartTLS
		}
		if len(first) > n { // the client must wait for the response (RFC 4511 4.14.1)
			return nil, errEarlyData
		}
		return &proxy.Decision{Reply: startTLSResponse(m.id), UpgradeTLS: true}, nil
	default:
		return nil, errNotBind
	}
}
