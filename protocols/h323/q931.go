package h323

import (
	"encoding/binary"
)

// Q.931 as H.225.0 uses it: protocol discriminator 0x08, a two-octet call
// reference, the message type, then information elements. An IE with bit 8
// set is a single octet; any other is identifier, length and contents,
// except the User-user IE, whose length H.225.0 widens to two octets.
const (
	q931Discriminator = 0x08
	q931CallRefLen    = 2 // H.225.0 7.2.2.2
	q931Setup         = 0x05
	q931Facility      = 0x62
	ieUserUser        = 0x7E
	// uuDiscriminator opens the User-user contents: X.208/X.209 coded user
	// information, here an H323-UserInformation in PER.
	uuDiscriminator = 0x05
)

// q931Message is the part of a Q.931 message gatehouse reads.
type q931Message struct {
	callRef uint16 // without the flag bit
	msgType byte
	// userUser is the H323-UserInformation, after the discriminator.
	userUser []byte
}

// parseQ931Header reads the message type, which is all a message cut short
// still shows.
func parseQ931Header(b []byte) (q931Message, error) {
	if len(b) < 3+q931CallRefLen || b[0] != q931Discriminator || b[1] != q931CallRefLen || b[4]&0x80 != 0 {
		return q931Message{}, errQ931
	}
	return q931Message{callRef: binary.BigEndian.Uint16(b[2:]) & 0x7FFF, msgType: b[4]}, nil
}

// parseQ931 reads a whole Q.931 message and the contents of its User-user
// IE, checking every length against the message.
func parseQ931(b []byte) (q931Message, error) {
	m, err := parseQ931Header(b)
	if err != nil {
		return m, err
	}
	for i := 3 + q931CallRefLen; i < len(b); {
		id := b[i]
		switch {
		case id&0x80 != 0:
			i++
		case id == ieUserUser:
			if len(b)-i < 3 {
				return m, errQ931
			}
			n := int(binary.BigEndian.Uint16(b[i+1:]))
			i += 3
			if n > len(b)-i {
				return m, errQ931
			}
			if m.userUser != nil {
				return m, errTwoUserUsers
			}
			// The discriminator and at least one octet of PER.
			if n < 2 || b[i] != uuDiscriminator {
				return m, errBadUserUser
			}
			m.userUser = b[i+1 : i+n : i+n]
			i += n
		default:
			if len(b)-i < 2 {
				return m, errQ931
			}
			n := int(b[i+1])
			i += 2
			if n > len(b)-i {
				return m, errQ931
			}
			i += n
		}
	}
	if m.userUser == nil {
		return m, errNoUserUser
	}
	return m, nil
}
