package turn

import (
	"encoding/binary"

	"github.com/pion/stun/v3"
)

// The relay allocates UDP over IPv4 only, but pion grants any Allocate
// whose REQUESTED-TRANSPORT is UDP or TCP and ignores the address family:
// a client asking for a TCP relay (RFC 6062) or an IPv6 one (RFC 6156)
// would get an IPv4 UDP relay it did not ask for. Such requests get the
// RFC's error instead, once authenticated (RFC 8656 §7.2 checks the
// credentials first, so an unauthenticated request still gets pion's 401).

// STUN attributes pion does not name.
const (
	attrRequestedAddressFamily  stun.AttrType = 0x0017 // RFC 6156 §4.1.1
	attrAdditionalAddressFamily stun.AttrType = 0x8000 // RFC 8656 §14.8
)

const (
	protoTCP   = 6    // REQUESTED-TRANSPORT's protocol number for TCP
	familyIPv6 = 0x02 // address family of REQUESTED-ADDRESS-FAMILY
)

// codeAddrFamilyNotSupported is RFC 8656's 440 (Address Family not Supported).
const codeAddrFamilyNotSupported stun.ErrorCode = 440

// unsupportedAllocation returns the signed error response to an
// authenticated Allocate request that asks for a TCP relay (442) or an
// IPv6 one (440), or nil for any other frame.
func unsupportedAllocation(raw []byte, key func(username, realm string) []byte) []byte {
	if !stun.IsMessage(raw) {
		return nil
	}
	var t stun.MessageType
	t.ReadValue(binary.BigEndian.Uint16(raw))
	if t.Class != stun.ClassRequest || t.Method != stun.MethodAllocate {
		return nil
	}
	m := &stun.Message{Raw: append([]byte(nil), raw...)}
	if m.Decode() != nil {
		return nil
	}
	var code stun.ErrorCode
	if v, err := m.Get(stun.AttrRequestedTransport); err == nil && len(v) == 4 && v[0] == protoTCP {
		code = stun.CodeUnsupportedTransProto
	} else if v, err := m.Get(attrRequestedAddressFamily); err == nil && len(v) == 4 && v[0] == familyIPv6 {
		code = codeAddrFamilyNotSupported
	} else if v, err := m.Get(attrAdditionalAddressFamily); err == nil && len(v) == 4 && v[0] == familyIPv6 {
		// A dual allocation (IPv4 and IPv6) cannot be made either.
		code = codeAddrFamilyNotSupported
	} else {
		return nil
	}
	var user stun.Username
	var realm stun.Realm
	if user.GetFrom(m) != nil || realm.GetFrom(m) != nil {
		return nil
	}
	k := key(user.String(), realm.String())
	if k == nil || stun.MessageIntegrity(k).Check(m) != nil {
		return nil // pion answers 401
	}
	resp, err := stun.Build(stun.NewTransactionIDSetter(m.TransactionID),
		stun.NewType(stun.MethodAllocate, stun.ClassErrorResponse),
		stun.ErrorCodeAttribute{Code: code, Reason: reasons[code]},
		stun.MessageIntegrity(k), stun.Fingerprint)
	if err != nil {
		return nil
	}
	return resp.Raw
}

var reasons = map[stun.ErrorCode][]byte{
	stun.CodeUnsupportedTransProto: []byte("Unsupported Transport Protocol"),
	codeAddrFamilyNotSupported:     []byte("Address Family not Supported"),
}
