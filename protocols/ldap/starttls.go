package ldap

import (
	"fmt"
	"net"

	goldap "github.com/go-ldap/ldap/v3"
)

// StartTLS asks a target on its plain LDAP port to start TLS (RFC 4511
// 4.14) and returns once the target has agreed; the caller then runs the
// TLS handshake on target. It reads exactly the response, nothing after
// it. It sets no deadline: the caller bounds it with one on target.
func (s *Sniffer) StartTLS(target net.Conn) error {
	addr := target.RemoteAddr()
	if _, err := target.Write(startTLSRequest); err != nil {
		return fmt.Errorf("ldap starttls to %s: %w", addr, err)
	}
	b, err := readMessage(target, s.maxMessage(nil)) // a StartTLS response is small
	if err != nil {
		return fmt.Errorf("ldap starttls to %s: reading response: %w", addr, err)
	}
	m, err := decode(b)
	if err != nil {
		return fmt.Errorf("ldap starttls to %s: %w", addr, err)
	}
	if m.id != startTLSID || !m.is(goldap.ApplicationExtendedResponse) {
		// A Notice of Disconnection (messageID 0) says why the target gave up.
		if err := goldap.GetLDAPError(m.packet); m.id == 0 && err != nil {
			return fmt.Errorf("ldap starttls to %s: target disconnected: %w", addr, err)
		}
		return fmt.Errorf("ldap starttls to %s: %w", addr, errUnexpectedResponse)
	}
	if err := goldap.GetLDAPError(m.packet); err != nil {
		return fmt.Errorf("ldap starttls to %s: refused: %w", addr, err)
	}
	return nil
}
