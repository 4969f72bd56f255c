package ldap

import (
	"errors"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// resultCodes answers each refusal, gatehouse's own and the proxy's, with
// the LDAP resultCode that tells the client best what went wrong, so that
// it reports "Inappropriate authentication (48)" and not "Can't contact
// LDAP server". Refusals not listed get unwillingToPerform.
var resultCodes = []struct {
	refusal *proxy.Refusal
	code    uint16
}{
	{errAnonymous, goldap.LDAPResultInappropriateAuthentication},
	{errUnauthBind, goldap.LDAPResultUnwillingToPerform}, // RFC 4513 5.1.2
	{errSASLNoName, goldap.LDAPResultInappropriateAuthentication},
	{errBindMethod, goldap.LDAPResultAuthMethodNotSupported},
	{errBadBind, goldap.LDAPResultProtocolError},
	{errEncoding, goldap.LDAPResultProtocolError},
	{errBadDN, goldap.LDAPResultInvalidDNSyntax},
	{errNotBind, goldap.LDAPResultOperationsError},
	{errNestedStartTLS, goldap.LDAPResultOperationsError}, // RFC 4513 3.1.1
	{errEarlyData, goldap.LDAPResultOperationsError},
	{errLateStartTLS, goldap.LDAPResultOperationsError},
	{&proxy.Refusal{Reason: proxy.ReasonUnreachable}, goldap.LDAPResultUnavailable},
	{proxy.ErrNoTunnel, goldap.LDAPResultUnavailable},
	{&proxy.Refusal{Reason: proxy.ReasonTargetDown}, goldap.LDAPResultUnavailable},
}

// resultCode is r's entry in resultCodes.
func resultCode(r *proxy.Refusal) uint16 {
	for _, rc := range resultCodes {
		if errors.Is(r, rc.refusal) {
			return rc.code
		}
	}
	return goldap.LDAPResultUnwillingToPerform
}

// RefusalReply answers the first message of a connection that gatehouse
// refuses for reason (proxy.Refuser): with the error response to the
// request when first begins with one complete LDAP request, with a Notice
// of Disconnection when it does not, and with nothing for an Unbind or
// Abandon, which have no response.
func (s *Sniffer) RefusalReply(first []byte, r *proxy.Refusal) []byte {
	var m *message
	if n, err := frame(first); err == nil && n <= len(first) { // first is capped by the proxy
		m, _ = decode(first[:n])
	}
	return answer(m, r)
}

// answer is the reply refusing request m with r; m is nil when the request
// could not be read. The diagnostic message names the refusal by its
// detail (gatehouse's own refusals) or its reason (the proxy's).
func answer(m *message, r *proxy.Refusal) []byte {
	what := r.Detail
	if what == "" {
		what = string(r.Reason)
	}
	diag := "refused by gatehouse: " + what
	if m == nil {
		return notice(diag)
	}
	if m.is(goldap.ApplicationUnbindRequest) || m.is(goldap.ApplicationAbandonRequest) {
		return nil
	}
	op, ok := responseOp[m.op.Tag]
	if !ok { // a response, or an unknown operation, sent by a client
		return notice(diag)
	}
	return result(m.id, op, resultCode(r), diag)
}

// notice is a Notice of Disconnection (RFC 4511 4.4.1): the unsolicited
// notification a server sends when it closes a connection over a protocol
// error, the one answer possible to bytes that are no request.
func notice(diag string) []byte {
	return result(0, goldap.ApplicationExtendedResponse, goldap.LDAPResultProtocolError, diag, responseName(oidNotice))
}
