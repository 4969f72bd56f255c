package ldap

import (
	"math"

	ber "github.com/go-asn1-ber/asn1-ber"
	goldap "github.com/go-ldap/ldap/v3"
)

// Object identifiers of the two extended operations gatehouse speaks itself.
const (
	oidStartTLS = "1.3.6.1.4.1.1466.20037" // RFC 4511 4.14
	oidNotice   = "1.3.6.1.4.1.1466.20036" // Notice of Disconnection, RFC 4511 4.4.1
)

// message is a decoded LDAPMessage.
type message struct {
	id     int64
	packet *ber.Packet // the LDAPMessage
	op     *ber.Packet // its protocolOp
}

// decode decodes b, one complete LDAPMessage as measured by frame, once
// checkEncoding found it canonical. asn1-ber copies what it keeps, so b may
// be reused afterwards.
func decode(b []byte) (*message, error) {
	if err := checkEncoding(b); err != nil {
		return nil, err
	}
	p, err := ber.DecodePacketErr(b)
	if err != nil || len(p.Children) < 2 {
		return nil, errMalformed
	}
	id, op := p.Children[0], p.Children[1]
	if id.ClassType != ber.ClassUniversal || id.TagType != ber.TypePrimitive || id.Tag != ber.TagInteger ||
		op.ClassType != ber.ClassApplication {
		return nil, errMalformed
	}
	v, ok := id.Value.(int64)
	if !ok || v < 0 || v > math.MaxInt32 { // MessageID ::= INTEGER (0 .. maxInt)
		return nil, errMalformed
	}
	return &message{id: v, packet: p, op: op}, nil
}

// is reports whether m's protocolOp is the application-class operation tag.
func (m *message) is(tag ber.Tag) bool { return m.op.Tag == tag }

// extendedName returns the requestName of an ExtendedRequest, "" when m is
// none or has none.
func (m *message) extendedName() string {
	if !m.is(goldap.ApplicationExtendedRequest) || len(m.op.Children) == 0 {
		return ""
	}
	name := m.op.Children[0]
	if name.ClassType != ber.ClassContext || name.Tag != 0 || name.TagType != ber.TypePrimitive {
		return ""
	}
	return name.Data.String()
}

// responseOp maps each request that has a response to its response's tag;
// Unbind and Abandon have none (RFC 4511 4.3, 4.11).
var responseOp = map[ber.Tag]ber.Tag{
	goldap.ApplicationBindRequest:     goldap.ApplicationBindResponse,
	goldap.ApplicationSearchRequest:   goldap.ApplicationSearchResultDone,
	goldap.ApplicationModifyRequest:   goldap.ApplicationModifyResponse,
	goldap.ApplicationAddRequest:      goldap.ApplicationAddResponse,
	goldap.ApplicationDelRequest:      goldap.ApplicationDelResponse,
	goldap.ApplicationModifyDNRequest: goldap.ApplicationModifyDNResponse,
	goldap.ApplicationCompareRequest:  goldap.ApplicationCompareResponse,
	goldap.ApplicationExtendedRequest: goldap.ApplicationExtendedResponse,
}

// result encodes an LDAPMessage with messageID id whose protocolOp op is an
// LDAPResult (RFC 4511 4.1.9), followed by the optional fields in extra.
func result(id int64, op ber.Tag, code uint16, diag string, extra ...*ber.Packet) []byte {
	msg := ber.NewSequence("LDAPMessage")
	msg.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, "messageID"))
	res := ber.Encode(ber.ClassApplication, ber.TypeConstructed, op, nil, "protocolOp")
	res.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, int64(code), "resultCode"))
	res.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", "matchedDN"))
	res.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, diag, "diagnosticMessage"))
	for _, p := range extra {
		res.AppendChild(p)
	}
	msg.AppendChild(res)
	return msg.Bytes()
}

// responseName is an ExtendedResponse's responseName field.
func responseName(oid string) *ber.Packet {
	return ber.NewString(ber.ClassContext, ber.TypePrimitive, 10, oid, "responseName")
}

// startTLSResponse accepts the StartTLS request with messageID id.
func startTLSResponse(id int64) []byte {
	return result(id, goldap.ApplicationExtendedResponse, goldap.LDAPResultSuccess, "", responseName(oidStartTLS))
}

// startTLSRequest is the StartTLS request sent to targets. Its messageID is
// the highest there is: clients count up from 1, and the exchange is over
// before the client's own messages are replayed, so it can never collide.
var startTLSRequest = func() []byte {
	msg := ber.NewSequence("LDAPMessage")
	msg.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, int64(startTLSID), "messageID"))
	req := ber.Encode(ber.ClassApplication, ber.TypeConstructed, goldap.ApplicationExtendedRequest, nil, "ExtendedRequest")
	req.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, oidStartTLS, "requestName"))
	msg.AppendChild(req)
	return msg.Bytes()
}()

const startTLSID = math.MaxInt32
