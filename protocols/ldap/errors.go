package ldap

import (
	"errors"

	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// Refusals: the package's sentinel errors are proxy.Refusals, so that the
// proxy and RefusalReply switch on their Reason; the Detail names the
// fault in fixed words (and is what an LDAP client reads in the
// diagnostic message). Find one with errors.Is.
var (
	// The first message.
	errAnonymous    = &proxy.Refusal{Reason: proxy.ReasonNoName, Detail: "anonymous bind"}
	errUnauthBind   = &proxy.Refusal{Reason: proxy.ReasonNoName, Detail: "unauthenticated bind"}
	errSASLNoName   = &proxy.Refusal{Reason: proxy.ReasonNoName, Detail: "SASL bind without name"}
	errBindMethod   = &proxy.Refusal{Reason: proxy.ReasonNoName, Detail: "unsupported bind method"}
	errNoDomain     = &proxy.Refusal{Reason: proxy.ReasonNoName, Detail: "bind name without domain"}
	errNotBind      = &proxy.Refusal{Reason: proxy.ReasonNoName, Detail: "first operation not a bind"}
	errBadBind      = &proxy.Refusal{Reason: proxy.ReasonUnreadable, Detail: "malformed bind request"}
	errBadDN        = &proxy.Refusal{Reason: proxy.ReasonUnreadable, Detail: "bind DN unparseable"}
	errOtherService = &proxy.Refusal{Reason: proxy.ReasonOtherService, Detail: "bind for another service"}
	// errCredentials: the target answered a bind invalidCredentials.
	errCredentials = &proxy.Refusal{Reason: proxy.ReasonCredentials}
	// errTooLarge is the proxy's own refusal when it hits the cap first.
	errTooLarge    = &proxy.Refusal{Reason: proxy.ReasonTooLarge}
	errUncheckable = &proxy.Refusal{Reason: proxy.ReasonTooLarge, Detail: "request too large to check"}
	// StartTLS out of turn.
	errNestedStartTLS = &proxy.Refusal{Reason: proxy.ReasonSequence, Detail: "StartTLS inside TLS"}
	errEarlyData      = &proxy.Refusal{Reason: proxy.ReasonSequence, Detail: "data after StartTLS request"}
	errLateStartTLS   = &proxy.Refusal{Reason: proxy.ReasonSequence, Detail: "StartTLS after first operation"}

	// Framing and decoding (frame.go, message.go, canonical.go).
	errNotMessage = &proxy.Refusal{Reason: proxy.ReasonProtocol, Detail: "not an LDAP message"}
	errMalformed  = &proxy.Refusal{Reason: proxy.ReasonUnreadable, Detail: "malformed LDAP message"}
	// RFC 4511 5.1 allows the definite form only.
	errIndefinite = &proxy.Refusal{Reason: proxy.ReasonUnreadable, Detail: "indefinite BER length"}
	errLongLength = &proxy.Refusal{Reason: proxy.ReasonUnreadable, Detail: "BER length too large"}
	errHighTag    = &proxy.Refusal{Reason: proxy.ReasonUnreadable, Detail: "unexpected BER tag"}
	// errEncoding refuses a message that gatehouse would decode one way
	// and a directory server might decode another: gatehouse forwards the
	// client's bytes, so it must only route and judge what every decoder
	// reads alike.
	errEncoding = &proxy.Refusal{Reason: proxy.ReasonUnreadable, Detail: "non-canonical BER encoding"}
)

// errUnexpectedResponse: a target answered StartTLS with something else.
var errUnexpectedResponse = errors.New("ldap: unexpected response")
