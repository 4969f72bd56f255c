package ldap

import (
	"errors"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// Reasons gatehouse refuses an LDAP request for. Their texts are what the
// proxy logs and reports, and what RefusalReply is handed back.
var (
	errAnonymous      = errors.New("anonymous bind")
	errUnauthBind     = errors.New("unauthenticated bind")
	errSASLNoName     = errors.New("SASL bind without name")
	errBindMethod     = errors.New("unsupported bind method")
	errBadBind        = errors.New("malformed bind request")
	errBadDN          = errors.New("bind DN unparseable")
	errNoDomain       = errors.New("bind name without domain")
	errOtherService   = errors.New("bind for another service")
	errNotBind        = errors.New("first operation not a bind")
	errTooLarge       = errors.New(proxy.ReasonTooLarge) // what the proxy says when it hits the cap first
	errUncheckable    = errors.New("request too large to check")
	errNestedStartTLS = errors.New("StartTLS inside TLS")
	errEarlyData      = errors.New("data after StartTLS request")
	errLateStartTLS   = errors.New("StartTLS after first operation")
)

// resultCodes answers each refusal reason, gatehouse's own and the proxy's,
// with the LDAP resultCode that tells the client best what went wrong, so
// that it reports "Inappropriate authentication (48)" and not "Can't
// contact LDAP server". Reasons not listed get unwillingToPerform.
var resultCodes = map[string]uint16{
	errAnonymous.Error():      goldap.LDAPResultInappropriateAuthentication,
	errUnauthBind.Error():     goldap.LDAPResultUnwillingToPerform, // RFC 4513 5.1.2
	errSASLNoName.Error():     goldap.LDAPResultInappropriateAuthentication,
	errBindMethod.Error():     goldap.LDAPResultAuthMethodNotSupported,
	errBadBind.Error():        goldap.LDAPResultProtocolError,
	errEncoding.Error():       goldap.LDAPResultProtocolError,
	errBadDN.Error():          goldap.LDAPResultInvalidDNSyntax,
	errNotBind.Error():        goldap.LDAPResultOperationsError,
	errNestedStartTLS.Error(): goldap.LDAPResultOperationsError, // RFC 4513 3.1.1
	errEarlyData.Error():      goldap.LDAPResultOperationsError,
	errLateStartTLS.Error():   goldap.LDAPResultOperationsError,
	proxy.ReasonUnreachable:   goldap.LDAPResultUnavailable,
}

// RefusalReply answers the first message of a connection that gatehouse
// refuses for reason (proxy.Refuser): with the error response to the
// request when first begins with one complete LDAP request, with a Notice
// of Disconnection when it does not, and with nothing for an Unbind or
// Abandon, which have no response.
func (s *Sniffer) RefusalReply(first []byte, reason string) []byte {
	var m *message
	if n, err := frame(first); err == nil && n <= len(first) { // first is capped by the proxy
		m, _ = decode(first[:n])
	}
	return answer(m, reason)
}

// answer is the reply refusing request m for reason; m is nil when the
// request could not be read.
func answer(m *message, reason string) []byte {
	diag := "refused by gatehouse: " + reason
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
	code, ok := resultCodes[reason]
	if !ok {
		code = goldap.LDAPResultUnwillingToPerform
	}
	return result(m.id, op, code, diag)
}

// notice is a Notice of Disconnection (RFC 4511 4.4.1): the unsolicited
// notification a server sends when it closes a connection over a protocol
// error, the one answer possible to bytes that are no request.
func notice(diag string) []byte {
	return result(0, goldap.ApplicationExtendedResponse, goldap.LDAPResultProtocolError, diag, responseName(oidNotice))
}
