package h323

import (
	"encoding/binary"
	"math/bits"
)

// This file is the test-only encoder of the vectors in testdata: an
// aligned-PER writer just big enough for them, and builders of the H.225.0
// messages an innovaphone-style endpoint and PBX exchange. Every vector it
// builds is checked against tshark (tshark_test.go), so the encoder is not
// trusted on its own: it is the reader's mirror, and Wireshark is the
// independent judge of both.

// perWriter writes aligned PER (X.691), most significant bit first.
type perWriter struct {
	buf  []byte
	nbit int
}

func (w *perWriter) uint(v uint64, n int) {
	for i := n - 1; i >= 0; i-- {
		if w.nbit%8 == 0 {
			w.buf = append(w.buf, 0)
		}
		if v>>i&1 == 1 {
			w.buf[len(w.buf)-1] |= 0x80 >> (w.nbit % 8)
		}
		w.nbit++
	}
}

func (w *perWriter) bit(b bool) {
	if b {
		w.uint(1, 1)
	} else {
		w.uint(0, 1)
	}
}

func (w *perWriter) align() { w.nbit = 8 * len(w.buf) }

func (w *perWriter) octets(b []byte) {
	w.align()
	w.buf = append(w.buf, b...)
	w.nbit = 8 * len(w.buf)
}

// bytes returns the complete encoding; an empty one is one zero octet, as
// an open type must hold at least one (X.691 10.1.3).
func (w *perWriter) bytes() []byte {
	if len(w.buf) == 0 {
		return []byte{0}
	}
	return w.buf
}

func (w *perWriter) constrained(v, lb, ub int64) {
	rng := uint64(ub-lb) + 1
	u := uint64(v - lb)
	switch {
	case rng == 1:
	case rng <= 255:
		w.uint(u, bits.Len64(rng-1))
	case rng == 256:
		w.align()
		w.uint(u, 8)
	case rng <= 1<<16:
		w.align()
		w.uint(u, 16)
	default:
		n := max(1, (bits.Len64(u)+7)/8)
		w.constrained(int64(n), 1, int64((bits.Len64(rng-1)+7)/8))
		w.align()
		w.uint(u, 8*n)
	}
}

func (w *perWriter) length(n, lb, ub int) {
	if ub >= 0 && ub < 1<<16 {
		if lb != ub {
			w.constrained(int64(n), int64(lb), int64(ub))
		}
		return
	}
	w.align()
	if n < 128 {
		w.uint(uint64(n), 8)
	} else {
		w.uint(uint64(0x8000|n), 16)
	}
}

// choice writes a root alternative of an extensible CHOICE.
func (w *perWriter) choice(i, root int) {
	w.bit(false)
	w.constrained(int64(i), 0, int64(root-1))
}

// extChoice writes an extension alternative and its value.
func (w *perWriter) extChoice(i int, value []byte) {
	w.bit(true)
	w.bit(false)
	w.uint(uint64(i), 6)
	w.openType(value)
}

// sequence writes an extensible SEQUENCE's extension bit and presence bits.
func (w *perWriter) sequence(ext bool, present ...bool) {
	w.bit(ext)
	for _, p := range present {
		w.bit(p)
	}
}

// extensions writes the extension additions of a SEQUENCE: one per
// element, nil for an absent one.
func (w *perWriter) extensions(adds ...[]byte) {
	w.bit(false)
	w.uint(uint64(len(adds)-1), 6)
	for _, a := range adds {
		w.bit(a != nil)
	}
	for _, a := range adds {
		if a != nil {
			w.openType(a)
		}
	}
}

func (w *perWriter) openType(b []byte) {
	w.length(len(b), 0, -1)
	w.octets(b)
}

func (w *perWriter) octetString(b []byte, lb, ub int) {
	w.length(len(b), lb, ub)
	if lb == ub && ub <= 2 {
		for _, c := range b {
			w.uint(uint64(c), 8)
		}
		return
	}
	w.octets(b)
}

func (w *perWriter) bmp(s string, lb, ub int) {
	r := []rune(s)
	w.length(len(r), lb, ub)
	w.align()
	for _, c := range r {
		w.uint(uint64(c), 16)
	}
}

func (w *perWriter) ia5(s string, lb, ub int) {
	w.length(len(s), lb, ub)
	w.octets([]byte(s))
}

// digits writes dialledDigits: IA5String(SIZE(1..128))(FROM("0123456789#*,")),
// each character as its 4-bit index in the sorted alphabet.
func (w *perWriter) digits(s string) {
	const alphabet = "#*,0123456789"
	w.length(len(s), 1, 128)
	w.align()
	for _, c := range s {
		for i, a := range alphabet {
			if a == c {
				w.uint(uint64(i), 4)
			}
		}
	}
}

// encode returns the complete encoding that f writes, as for an open type.
func encode(f func(w *perWriter)) []byte {
	var w perWriter
	f(&w)
	return w.bytes()
}

// H.225.0 builders.

// h225ProtocolID is 0.0.8.2250.0.6 (H.225.0 version 6).
var h225ProtocolID = []byte{0x00, 0x08, 0x91, 0x4A, 0x00, 0x06}

type testAlias struct {
	kind  aliasKind // aliasOther stands for dialledDigits
	value string
}

func h323ID(s string) testAlias  { return testAlias{aliasH323ID, s} }
func url(s string) testAlias     { return testAlias{aliasURL, s} }
func email(s string) testAlias   { return testAlias{aliasEmail, s} }
func dialled(s string) testAlias { return testAlias{aliasOther, s} }

func (w *perWriter) alias(a testAlias) {
	switch a.kind {
	case aliasOther:
		w.choice(0, 2)
		w.digits(a.value)
	case aliasH323ID:
		w.choice(1, 2)
		w.bmp(a.value, 1, 256)
	case aliasURL:
		w.extChoice(0, encode(func(w *perWriter) { w.ia5(a.value, 1, 512) }))
	case aliasEmail:
		w.extChoice(2, encode(func(w *perWriter) { w.ia5(a.value, 1, 512) }))
	}
}

func (w *perWriter) aliases(as []testAlias) {
	w.length(len(as), 0, -1)
	for _, a := range as {
		w.alias(a)
	}
}

// ipv4 writes TransportAddress ipAddress.
func (w *perWriter) ipv4(ip [4]byte, port int) {
	w.choice(0, 7)
	w.octets(ip[:])
	w.constrained(int64(port), 0, 65535)
}

var phoneIP = [4]byte{192, 168, 1, 23}

// h221 writes an H221NonStandard of innovaphone (Germany, 0x0004... as a
// phone reports it; the numbers only have to be in range).
func (w *perWriter) h221() {
	w.sequence(false)
	w.constrained(4, 0, 255)
	w.constrained(0, 0, 255)
	w.constrained(0x4B4E, 0, 65535)
}

func (w *perWriter) vendor() {
	w.sequence(false, true, true)
	w.h221()
	w.octetString([]byte("IP232"), 1, 256)
	w.octetString([]byte("13r2 sr12"), 1, 256)
}

// endpointType writes an EndpointType: a terminal with its vendor, or a
// gateway offering voice and H.323 with a non-standard parameter.
func (w *perWriter) endpointType(gateway bool) {
	w.sequence(false, false, true, false, gateway, false, !gateway)
	w.vendor()
	if gateway {
		w.sequence(false, true, true) // GatewayInfo: protocol, nonStandardData
		w.length(2, 0, -1)
		w.choice(7, 9) // voice VoiceCaps
		w.sequence(false, false)
		w.choice(5, 9) // h323 H323Caps
		w.sequence(false, false)
		w.nonStandard()
	} else {
		w.sequence(false, false) // TerminalInfo
	}
	w.bit(false) // mc
	w.bit(false) // undefinedNode
}

func (w *perWriter) nonStandard() {
	w.choice(1, 2)
	w.h221()
	w.octetString([]byte{0xDE, 0xAD, 0xBE, 0xEF}, 0, -1)
}

// RAS messages.

func grq(gatekeeperID string, aliases ...testAlias) []byte {
	return encode(func(w *perWriter) {
		w.choice(rasGRQ, 25)
		w.sequence(false, false, gatekeeperID != "", false, len(aliases) > 0)
		w.constrained(1, 1, 65535)
		w.octetString(h225ProtocolID, 0, -1)
		w.ipv4(phoneIP, 1719)
		w.endpointType(false)
		if gatekeeperID != "" {
			w.bmp(gatekeeperID, 1, 128)
		}
		if len(aliases) > 0 {
			w.aliases(aliases)
		}
	})
}

// rrq builds a RegistrationRequest with the extension additions a
// version 4+ endpoint sends (timeToLive, keepAlive, willSupplyUUIEs,
// maintainConnection).
func rrq(gatekeeperID string, gateway bool, aliases ...testAlias) []byte {
	return encode(func(w *perWriter) {
		w.choice(rasRRQ, 25)
		w.sequence(true, false, len(aliases) > 0, gatekeeperID != "")
		w.constrained(2, 1, 65535)
		w.octetString(h225ProtocolID, 0, -1)
		w.bit(false) // discoveryComplete
		w.length(1, 0, -1)
		w.ipv4(phoneIP, 1720)
		w.length(1, 0, -1)
		w.ipv4(phoneIP, 1719)
		w.endpointType(gateway)
		if len(aliases) > 0 {
			w.aliases(aliases)
		}
		if gatekeeperID != "" {
			w.bmp(gatekeeperID, 1, 128)
		}
		w.vendor()
		no := encode(func(w *perWriter) { w.bit(false) })
		yes := encode(func(w *perWriter) { w.bit(true) })
		ttl := encode(func(w *perWriter) { w.constrained(300, 1, 4294967295) })
		w.extensions(nil, ttl, nil, nil, nil, no, nil, no, yes)
	})
}

// rcf builds a RegistrationConfirm, the target's normal answer.
func rcf(gatekeeperID string, aliases ...testAlias) []byte {
	return encode(func(w *perWriter) {
		w.choice(4, 25)
		w.sequence(false, false, true, true)
		w.constrained(2, 1, 65535)
		w.octetString(h225ProtocolID, 0, -1)
		w.length(1, 0, -1)
		w.ipv4([4]byte{172, 16, 0, 10}, 1720)
		w.aliases(aliases)
		w.bmp(gatekeeperID, 1, 128)
		w.bmp("ep-0001", 1, 128)
	})
}

// grj builds a GatekeeperReject for root reason i.
func grj(gatekeeperID string, i int) []byte {
	return encode(func(w *perWriter) {
		w.choice(rasGRJ, 25)
		w.sequence(false, false, true)
		w.constrained(1, 1, 65535)
		w.octetString(h225ProtocolID, 0, -1)
		w.bmp(gatekeeperID, 1, 128)
		w.choice(i, 4)
	})
}

// rrj builds a RegistrationReject for reason i, an extension one when ext.
func rrj(gatekeeperID string, i int, ext bool) []byte {
	return encode(func(w *perWriter) {
		w.choice(rasRRJ, 25)
		w.sequence(false, false, true)
		w.constrained(2, 1, 65535)
		w.octetString(h225ProtocolID, 0, -1)
		if ext {
			w.extChoice(i, []byte{0}) // a NULL alternative
		} else {
			w.choice(i, 8)
			if i == 4 { // duplicateAlias SEQUENCE OF AliasAddress
				w.aliases([]testAlias{h323ID("alice")})
			}
		}
		w.bmp(gatekeeperID, 1, 128)
	})
}

// Signalling messages.

// genericData17 writes GenericData for H.460.17 carrying ras.
func (w *perWriter) genericData17(ras ...[]byte) {
	w.sequence(false, true)
	w.choice(0, 3)
	w.bit(false)
	w.constrained(featureRASTunnel, 0, 16383)
	w.length(len(ras), 1, 512)
	for _, m := range ras {
		w.sequence(false, true)
		w.choice(0, 3)
		w.bit(false)
		w.constrained(paramRASMessage, 0, 16383)
		w.choice(0, 12) // raw
		w.octetString(m, 0, -1)
	}
}

// genericDataOther writes a feature gatehouse must step over: parameters
// of most Content kinds, a compound, and a nested feature whose parameter 1
// is raw but is not H.460.17's.
func (w *perWriter) genericDataOther() {
	param := func(id int64, content func()) {
		w.sequence(false, true)
		w.choice(0, 3)
		w.bit(false)
		w.constrained(id, 0, 16383)
		content()
	}
	w.sequence(false, true)
	w.choice(0, 3)
	w.bit(false)
	w.constrained(1000, 0, 16383)
	w.length(6, 1, 512)
	param(1, func() { w.choice(6, 12); w.constrained(123456, 0, 4294967295) })
	param(2, func() { w.choice(1, 12); w.ia5("text", 0, -1) })
	param(3, func() { w.choice(2, 12); w.bmp("unicode", 0, -1) })
	param(4, func() { w.choice(8, 12); w.alias(h323ID("bob")) })
	param(5, func() {
		w.choice(10, 12) // compound
		w.length(1, 1, 512)
		param(1, func() { w.choice(3, 12); w.bit(true) })
	})
	param(6, func() {
		w.choice(11, 12) // nested
		w.length(1, 1, 16)
		w.sequence(false, true)
		w.choice(0, 3)
		w.bit(false)
		w.constrained(featureRASTunnel, 0, 16383)
		w.length(1, 1, 512)
		param(1, func() { w.choice(0, 12); w.octetString(grq("evil.example"), 0, -1) })
	})
}

// facilityOptions vary the Facility carrying RAS messages.
type facilityOptions struct {
	body         string // "empty" (the default) or "facility"
	noTunnelling bool   // omit h245Tunnelling, as some endpoints do
	otherFeature bool   // a non-H.460.17 GenericData before the tunnel
}

// facilityUU builds the H323-UserInformation of a Facility tunnelling ras.
func facilityUU(o facilityOptions, ras ...[]byte) []byte {
	var generic func(w *perWriter)
	if len(ras) > 0 || o.otherFeature {
		generic = func(w *perWriter) {
			n := 0
			if len(ras) > 0 {
				n++
			}
			if o.otherFeature {
				n++
			}
			w.length(n, 0, -1)
			if o.otherFeature {
				w.genericDataOther()
			}
			if len(ras) > 0 {
				w.genericData17(ras...)
			}
		}
	}
	return facilityUUWith(o, generic)
}

// facilityUUWith builds the H323-UserInformation of a Facility whose
// genericData (SEQUENCE OF GenericData) generic writes; nil for none.
func facilityUUWith(o facilityOptions, generic func(w *perWriter)) []byte {
	return encode(func(w *perWriter) {
		w.sequence(false, false) // H323-UserInformation
		w.sequence(true, false)  // H323-UU-PDU
		if o.body == "facility" {
			w.choice(6, 7)
			w.sequence(false, false, false, false)
			w.octetString(h225ProtocolID, 0, -1)
			w.choice(3, 4) // undefinedReason
		} else {
			w.extChoice(1, []byte{0}) // empty NULL
		}
		tunnelling := encode(func(w *perWriter) { w.bit(true) })
		if o.noTunnelling {
			tunnelling = nil
		}
		var gd []byte
		if generic != nil {
			gd = encode(generic)
		}
		w.extensions(nil, tunnelling, nil, nil, nil, nil, nil, nil, gd)
	})
}

// setupUU builds the H323-UserInformation of a Setup to dest.
func setupUU(dest []testAlias, src []testAlias, gateway bool) []byte {
	return encode(func(w *perWriter) {
		w.sequence(false, false)
		w.sequence(true, false)
		w.choice(0, 7)
		w.sequence(true, false, len(src) > 0, len(dest) > 0, false, false, false, false)
		w.octetString(h225ProtocolID, 0, -1)
		if len(src) > 0 {
			w.aliases(src)
		}
		w.endpointType(gateway)
		if len(dest) > 0 {
			w.aliases(dest)
		}
		w.bit(false) // activeMC
		w.octetString([]byte("conference-id-16"), 16, 16)
		w.choice(0, 3) // conferenceGoal create
		w.choice(0, 4) // callType pointToPoint
		no := encode(func(w *perWriter) { w.bit(false) })
		callID := encode(func(w *perWriter) {
			w.sequence(false)
			w.octets([]byte("call-identifier!"))
		})
		w.extensions(nil, nil, callID, nil, nil, nil, nil, no, no, nil, no, no)
		w.extensions(nil, encode(func(w *perWriter) { w.bit(true) }))
	})
}

// q931 builds a Q.931 message carrying the User-user contents uu after
// the other IEs.
func q931(msgType byte, callRef uint16, uu []byte, ies ...[]byte) []byte {
	b := []byte{q931Discriminator, q931CallRefLen, byte(callRef >> 8), byte(callRef), msgType}
	for _, ie := range ies {
		b = append(b, ie...)
	}
	b = append(b, ieUserUser, 0, 0, uuDiscriminator)
	binary.BigEndian.PutUint16(b[len(b)-3:], uint16(len(uu)+1))
	return append(b, uu...)
}

var (
	ieBearer  = []byte{0x04, 0x03, 0x88, 0x90, 0xA5} // unrestricted digital, 64 kbit/s
	ieDisplay = []byte{0x28, 0x05, 'a', 'l', 'i', 'c', 'e'}
)

func tpkt(payload []byte) []byte {
	b := []byte{3, 0, 0, 0}
	binary.BigEndian.PutUint16(b[2:], uint16(len(payload)+4))
	return append(b, payload...)
}

// facility and setup build whole packets as they travel on the wire.
func facility(o facilityOptions, ras ...[]byte) []byte {
	return tpkt(q931(q931Facility, 0, facilityUU(o, ras...)))
}

func setup(dest []testAlias, src []testAlias, gateway bool) []byte {
	return tpkt(q931(q931Setup, 0x1234, setupUU(dest, src, gateway), ieBearer, ieDisplay))
}
