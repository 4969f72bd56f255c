package turn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/pion/stun/v3"
)

// Binding requests are answered here, not by pion. pion drops RFC 3489
// requests (no magic cookie: phones that detect their NAT type the old
// way), answers every other one with XOR-MAPPED-ADDRESS alone from the
// socket it arrived on, CHANGE-REQUEST or not, and ignores attributes it
// does not know. RFC 5780 behaviour discovery needs more: MAPPED-ADDRESS
// too, RESPONSE-ORIGIN, OTHER-ADDRESS, and the response sent from the
// socket CHANGE-REQUEST names (discovery.go).

// Binding request attributes pion's stun package does not name.
const (
	attrResponseAddress stun.AttrType = 0x0002 // RFC 3489 §11.2.2
	attrPassword        stun.AttrType = 0x0007 // RFC 3489 §11.2.7
)

// magicCookie tells RFC 5389 and later messages from RFC 3489 ones.
const magicCookie = 0x2112A442

// CHANGE-REQUEST flags (RFC 5780 §7.2, RFC 3489 §11.2.4).
const (
	changeIP   = 0x04
	changePort = 0x02
)

// maxPadding bounds the PADDING of a response: an Ethernet MTU less the
// IP and UDP headers.
const maxPadding = 1500 - 20 - 8

// known are the comprehension-required attributes a Binding request may
// carry without a 420. Credentials are accepted and not checked: a STUN
// server's Binding needs none, and pion checks none either. RESPONSE-ADDRESS
// (RFC 3489) is left out on purpose: it asks the server to send the
// response to any address, which turns it into a reflector.
var known = map[stun.AttrType]bool{
	stun.AttrChangeRequest:          true,
	stun.AttrUsername:               true,
	attrPassword:                    true,
	stun.AttrMessageIntegrity:       true,
	stun.AttrRealm:                  true,
	stun.AttrNonce:                  true,
	stun.AttrMessageIntegritySHA256: true,
	stun.AttrPasswordAlgorithm:      true,
	stun.AttrUserhash:               true,
	stun.AttrXORMappedAddress:       true, // 0x8020 as old drafts sent it, which pion maps here
	stun.AttrPriority:               true,
	stun.AttrUseCandidate:           true,
	stun.AttrPadding:                true,
	stun.AttrResponsePort:           true,
}

// bindingRequest is a parsed Binding request.
type bindingRequest struct {
	// classic is an RFC 3489 request: no magic cookie, a 16-byte
	// transaction ID (the cookie field included).
	classic bool
	// id is the header's bytes 4 to 20: cookie and transaction ID, or
	// the classic 16-byte transaction ID. The response repeats them.
	id [16]byte
	// change holds the CHANGE-REQUEST flags; hasChange whether the
	// attribute was sent at all (RFC 5780 answers 420 to it without an
	// alternate address, whatever its flags).
	change    uint32
	hasChange bool
	// responsePort is RESPONSE-PORT; 0 when absent.
	responsePort uint16
	// padding is the length of PADDING; -1 when absent.
	padding int
	// unknown lists comprehension-required attributes not understood.
	unknown []stun.AttrType
}

var (
	errNotBinding   = errors.New("not a Binding request")
	errBadLength    = errors.New("message length does not match the datagram")
	errBadAttribute = errors.New("malformed attribute")
	errFingerprint  = errors.New("FINGERPRINT does not match")
)

// isBindingRequest reports whether frame starts like a Binding request,
// with the magic cookie or without (RFC 3489): what parseBinding is for.
func isBindingRequest(frame []byte) bool {
	return len(frame) >= 20 && frame[0] == 0x00 && frame[1] == 0x01
}

// parseBinding parses a Binding request strictly: the header's length is
// the datagram's, attributes are framed as RFC 8489 §14 says (pion decodes
// them), FINGERPRINT, when sent, is the last attribute and matches.
func parseBinding(raw []byte) (bindingRequest, error) {
	req := bindingRequest{padding: -1}
	if !isBindingRequest(raw) {
		return req, errNotBinding
	}
	size := int(binary.BigEndian.Uint16(raw[2:4]))
	if size%4 != 0 || len(raw) != 20+size {
		return req, errBadLength
	}
	copy(req.id[:], raw[4:20])
	m := &stun.Message{Raw: append([]byte(nil), raw...)}
	if binary.BigEndian.Uint32(raw[4:8]) != magicCookie {
		// pion decodes only messages with the cookie; attributes are
		// framed alike (RFC 3489 §11.1, all of its values are multiples
		// of 4), so decode them under a borrowed one.
		req.classic = true
		binary.BigEndian.PutUint32(m.Raw[4:8], magicCookie)
	}
	if err := m.Decode(); err != nil {
		return req, err
	}
	seen := map[stun.AttrType]bool{}
	for i, a := range m.Attributes {
		if seen[a.Type] {
			continue // RFC 8489 §14: only the first of a type is processed
		}
		seen[a.Type] = true
		switch a.Type {
		case stun.AttrChangeRequest:
			if len(a.Value) != 4 {
				return req, fmt.Errorf("%w: CHANGE-REQUEST of %d bytes", errBadAttribute, len(a.Value))
			}
			req.hasChange = true
			req.change = binary.BigEndian.Uint32(a.Value) & (changeIP | changePort)
		case stun.AttrResponsePort:
			if len(a.Value) != 4 || binary.BigEndian.Uint16(a.Value) == 0 {
				return req, fmt.Errorf("%w: RESPONSE-PORT", errBadAttribute)
			}
			req.responsePort = binary.BigEndian.Uint16(a.Value)
		case stun.AttrPadding:
			req.padding = len(a.Value)
		case stun.AttrFingerprint:
			if req.classic || i != len(m.Attributes)-1 || stun.Fingerprint.Check(m) != nil {
				return req, errFingerprint
			}
		default:
			if a.Type.Required() && !known[a.Type] {
				req.unknown = append(req.unknown, a.Type)
			}
		}
	}
	return req, nil
}

// socket names one of the four UDP sockets of RFC 5780 §3: bit 1 set is
// the alternate IP, bit 0 the alternate port. Flipping bits is what
// CHANGE-REQUEST asks for.
type socket uint8

const (
	primary   socket = 0 // turn.listen: also TCP, TLS and TURN
	altPort   socket = 1 // the primary IP, the port after turn.listen's
	altIP     socket = 2 // turn.alternate_address, turn.listen's port
	altIPPort socket = 3 // turn.alternate_address, the alternate port
)

// bindingReply is what to send for a request: from which socket, to where.
type bindingReply struct {
	msg  []byte
	from socket
	to   netip.AddrPort
	err  stun.ErrorCode // 0 for a success response
}

// answerBinding builds the reply to req, received on socket at from src.
// addrs are the four sockets' addresses, only addrs[primary] when there
// is no alternate address. stream is true for TCP and TLS, which have one
// socket and cannot change it.
func answerBinding(req bindingRequest, at socket, src netip.AddrPort, addrs []netip.AddrPort, stream bool) (bindingReply, error) {
	r := bindingReply{from: at, to: src}
	discovery := len(addrs) == 4 && !stream
	switch {
	case len(req.unknown) > 0:
		return r.fail(req, stun.CodeUnknownAttribute, req.unknown)
	case req.hasChange && !discovery && (!req.classic || req.change != 0 || stream):
		// RFC 5780 §6.1: no alternate address and port, 420, whatever
		// the flags. RFC 3489 defines no such error, and its clients send
		// CHANGE-REQUEST without flags to learn their mapped address
		// (test I): that much is answered, a change is refused alike.
		// Over TCP there is no other socket to answer from either.
		return r.fail(req, stun.CodeUnknownAttribute, []stun.AttrType{stun.AttrChangeRequest})
	case req.responsePort != 0 && stream:
		// RFC 5780 §7.5: RESPONSE-PORT is for UDP.
		return r.fail(req, stun.CodeBadRequest, nil)
	case req.responsePort != 0 && req.padding >= 0:
		// RFC 5780 §6.1: PADDING with RESPONSE-PORT is a 400.
		return r.fail(req, stun.CodeBadRequest, nil)
	}
	if req.hasChange {
		if req.change&changeIP != 0 {
			r.from ^= altIP
		}
		if req.change&changePort != 0 {
			r.from ^= altPort
		}
	}
	if req.responsePort != 0 {
		r.to = netip.AddrPortFrom(src.Addr(), req.responsePort)
	}
	origin := udpAddr(addrs[r.from])
	mapped := udpAddr(src)
	setters := []stun.Setter{
		stun.NewTransactionIDSetter([stun.TransactionIDSize]byte(req.id[4:])),
		stun.BindingSuccess,
		&stun.MappedAddress{IP: mapped.IP, Port: mapped.Port},
	}
	if req.classic {
		// RFC 3489 §11.1: SOURCE-ADDRESS and CHANGED-ADDRESS (RFC 5780
		// §7.3, 7.4 renamed them); no XOR-MAPPED-ADDRESS, which is
		// computed with a cookie the client did not send.
		setters = append(setters, (*addrAttr)(&stun.MappedAddress{IP: origin.IP, Port: origin.Port}).as(stun.AttrSourceAddress))
		if discovery {
			other := udpAddr(addrs[at^altIPPort])
			setters = append(setters, (*addrAttr)(&stun.MappedAddress{IP: other.IP, Port: other.Port}).as(stun.AttrChangedAddress))
		}
	} else {
		// RFC 5780 §6.1: MAPPED-ADDRESS and XOR-MAPPED-ADDRESS both.
		setters = append(setters,
			&stun.XORMappedAddress{IP: mapped.IP, Port: mapped.Port},
			&stun.ResponseOrigin{IP: origin.IP, Port: origin.Port})
		if discovery {
			// The socket that differs in both IP and port from the one
			// the request arrived on (RFC 5780 §6.1, Table 1).
			other := udpAddr(addrs[at^altIPPort])
			setters = append(setters, &stun.OtherAddress{IP: other.IP, Port: other.Port})
		}
		if req.padding >= 0 {
			// The request's own PADDING length, not the MTU RFC 5780 §6.1
			// suggests: the response is never much larger than the
			// request, so spoofed requests gain no amplification.
			setters = append(setters, stun.RawAttribute{Type: stun.AttrPadding, Value: make([]byte, min(req.padding, maxPadding))})
		}
		setters = append(setters, stun.Fingerprint)
	}
	return r.build(req, setters)
}

// fail makes r an error response with code, sent back where the request
// came from.
func (r bindingReply) fail(req bindingRequest, code stun.ErrorCode, unknown []stun.AttrType) (bindingReply, error) {
	r.err = code
	setters := []stun.Setter{
		stun.NewTransactionIDSetter([stun.TransactionIDSize]byte(req.id[4:])),
		stun.NewType(stun.MethodBinding, stun.ClassErrorResponse),
		code,
	}
	if len(unknown) > 0 {
		if req.classic && len(unknown)%2 == 1 {
			// RFC 3489 §11.2.10: an odd list repeats one type so the
			// value is a multiple of 4 bytes.
			unknown = append(unknown[:len(unknown):len(unknown)], unknown[0])
		}
		setters = append(setters, stun.UnknownAttributes(unknown))
	}
	if !req.classic {
		setters = append(setters, stun.Fingerprint)
	}
	return r.build(req, setters)
}

// build makes r's message of setters, with the request's ID field.
func (r bindingReply) build(req bindingRequest, setters []stun.Setter) (bindingReply, error) {
	m, err := stun.Build(setters...)
	if err != nil {
		return r, err
	}
	r.msg = withID(m.Raw, req)
	return r, nil
}

// withID puts the request's cookie field back into a response pion built
// with the magic cookie: RFC 8489 §12 has a server copy it for an RFC 3489
// client, whose transaction ID spans it.
func withID(raw []byte, req bindingRequest) []byte {
	if req.classic {
		copy(raw[4:8], req.id[:4])
	}
	return raw
}

// addrAttr writes a MAPPED-ADDRESS-shaped attribute under another type,
// as RFC 3489's SOURCE-ADDRESS and CHANGED-ADDRESS are.
type addrAttr stun.MappedAddress

func (a *addrAttr) as(t stun.AttrType) stun.Setter {
	return setterFunc(func(m *stun.Message) error { return (*stun.MappedAddress)(a).AddToAs(m, t) })
}

type setterFunc func(*stun.Message) error

func (f setterFunc) AddTo(m *stun.Message) error { return f(m) }

func udpAddr(a netip.AddrPort) *net.UDPAddr {
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(a.Addr().Unmap(), a.Port()))
}
