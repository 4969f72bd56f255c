package h323

import (
	"errors"

	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// Refusals: the package's sentinel errors are proxy.Refusals, so that the
// proxy switches on their Reason; the Detail is short and stable and never
// quotes the client's bytes. A refusal for a message that did not decode
// carries the decoding error as its cause (Refusal.With), which errors.Is
// still reaches.
var (
	// Framing (tpkt.go) and Q.931 (q931.go).
	errTPKT         = &proxy.Refusal{Reason: proxy.ReasonProtocol, Detail: "bad TPKT header"}
	errQ931         = &proxy.Refusal{Reason: proxy.ReasonUnreadable, Detail: "bad Q.931 message"}
	errNoUserUser   = &proxy.Refusal{Reason: proxy.ReasonUnreadable, Detail: "no User-user IE"}
	errBadUserUser  = &proxy.Refusal{Reason: proxy.ReasonUnreadable, Detail: "bad User-user IE"}
	errTwoUserUsers = &proxy.Refusal{Reason: proxy.ReasonUnreadable, Detail: "two User-user IEs"}
	// H.225.0.
	errH225            = &proxy.Refusal{Reason: proxy.ReasonUnreadable, Detail: "bad H.225.0 message"}
	errRAS             = &proxy.Refusal{Reason: proxy.ReasonUnreadable, Detail: "bad tunnelled RAS message"}
	errNotRoutable     = &proxy.Refusal{Reason: proxy.ReasonNoName, Detail: "neither Setup nor registration"}
	errNoGatekeeperID  = &proxy.Refusal{Reason: proxy.ReasonNoName, Detail: "registration without gatekeeper ID"}
	errBadGatekeeperID = &proxy.Refusal{Reason: proxy.ReasonNoName, Detail: "bad gatekeeper ID"}
	errNoCalledDomain  = &proxy.Refusal{Reason: proxy.ReasonNoName, Detail: "Setup without called domain"}
	errOtherService    = &proxy.Refusal{Reason: proxy.ReasonOtherService, Detail: "registration for another service"}
	errOtherAlias      = &proxy.Refusal{Reason: proxy.ReasonIdentity, Detail: "registration for another alias"}
	errManyUsers       = &proxy.Refusal{Reason: proxy.ReasonIdentity, Detail: "registration for more than one user"}
	errUncheckable     = &proxy.Refusal{Reason: proxy.ReasonTooLarge, Detail: "Facility too large to check"}
)

// Decoding faults of H.225.0 (h225.go): the causes of errH225 and errRAS.
var (
	errTooDeep     = errors.New("h225: GenericData nested too deep")
	errTooManyRAS  = errors.New("h225: too many tunnelled RAS messages")
	errBadString   = errors.New("h225: invalid BMPString")
	errBodyMessage = errors.New("h225: message body does not match the Q.931 message type")
)
