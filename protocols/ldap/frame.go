package ldap

import (
	"errors"
	"io"
	"math"

	ber "github.com/go-asn1-ber/asn1-ber"
	goldap "github.com/go-ldap/ldap/v3"

	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// asn1-ber decodes whole elements only: ReadPacket reads as much as the
// length claims before it returns, and DecodePacket cannot tell "truncated"
// from "malformed". The proxy needs more than that: the size of a message
// from its first bytes, so it can wait for the rest, refuse an oversized
// first message at once, and stream large search results it never buffers.
// So the identifier and length octets (X.690 8.1.2, 8.1.3) of the outer
// LDAPMessage, and of its messageID to reach the protocolOp tag, are read
// here; asn1-ber decodes only complete messages whose size was checked.

// Identifier octets of the elements read here. LDAP's tags at this level all
// have low tag numbers, so each is one octet.
const (
	tagSequence = byte(ber.ClassUniversal) | byte(ber.TypeConstructed) | byte(ber.TagSequence) // LDAPMessage
	tagInteger  = byte(ber.ClassUniversal) | byte(ber.TypePrimitive) | byte(ber.TagInteger)    // messageID

	opBindRequest     = byte(ber.ClassApplication) | byte(ber.TypeConstructed) | goldap.ApplicationBindRequest
	opBindResponse    = byte(ber.ClassApplication) | byte(ber.TypeConstructed) | goldap.ApplicationBindResponse
	opExtendedRequest = byte(ber.ClassApplication) | byte(ber.TypeConstructed) | goldap.ApplicationExtendedRequest
)

// maxLengthOctets bounds the long length form: four octets already describe
// 4 GiB, far beyond any directory server's message limit.
const maxLengthOctets = 4

// header reads the identifier and length octets of the BER element at the
// start of buf: its tag octet, the header's size and the content's size.
// It returns proxy.ErrNeedMore while buf ends inside the header.
func header(buf []byte) (tag byte, hdr, n int, err error) {
	if len(buf) < 2 {
		return 0, 0, 0, proxy.ErrNeedMore
	}
	tag = buf[0]
	if tag&byte(ber.HighTag) == byte(ber.HighTag) {
		return 0, 0, 0, errHighTag
	}
	l := buf[1]
	switch {
	case l < 0x80: // short form
		return tag, 2, int(l), nil
	case l == 0x80:
		return 0, 0, 0, errIndefinite
	case int(l&0x7f) > maxLengthOctets: // 0xff, reserved, lands here too
		return 0, 0, 0, errLongLength
	}
	hdr = 2 + int(l&0x7f)
	if len(buf) < hdr {
		return 0, 0, 0, proxy.ErrNeedMore
	}
	var v uint64
	for _, b := range buf[2:hdr] {
		v = v<<8 | uint64(b)
	}
	if v > math.MaxInt32-uint64(hdr) { // keeps hdr+n an int on every platform
		return 0, 0, 0, errLongLength
	}
	return tag, hdr, int(v), nil
}

// frame returns the total size of the LDAPMessage at the start of buf as
// soon as its header is in, or proxy.ErrNeedMore.
func frame(buf []byte) (int, error) {
	if len(buf) > 0 && buf[0] != tagSequence {
		return 0, errNotMessage
	}
	_, hdr, n, err := header(buf)
	if err != nil {
		return 0, err
	}
	return hdr + n, nil
}

// opTag returns the identifier octet of the protocolOp of the LDAPMessage
// msg starts with, reading headers only, so a large search result entry is
// classified without being decoded. ok is false when msg does not reach
// that far or its messageID is not an INTEGER.
func opTag(msg []byte) (op byte, ok bool) {
	_, hdr, _, err := header(msg)
	if err != nil {
		return 0, false
	}
	tag, idHdr, idLen, err := header(msg[hdr:])
	if err != nil || tag != tagInteger {
		return 0, false
	}
	i := hdr + idHdr + idLen
	if i >= len(msg) {
		return 0, false
	}
	return msg[i], true
}

// readMessage reads exactly one LDAPMessage of at most max bytes from r,
// and not a byte more: on a StartTLS exchange whatever follows belongs to
// TLS. The header is read octet by octet (it is six at most), so nothing is
// allocated for a size that was not checked.
func readMessage(r io.Reader, max int) ([]byte, error) {
	var head [2 + maxLengthOctets]byte
	got := 0
	for {
		n, err := frame(head[:got])
		if err == nil {
			if n > max {
				return nil, errLongLength
			}
			msg := make([]byte, n)
			copy(msg, head[:got])
			if _, err := io.ReadFull(r, msg[got:]); err != nil {
				return nil, err
			}
			return msg, nil
		}
		if !errors.Is(err, proxy.ErrNeedMore) {
			return nil, err
		}
		if _, err := io.ReadFull(r, head[got:got+1]); err != nil {
			return nil, err
		}
		got++
	}
}
