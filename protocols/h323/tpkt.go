package h323

import (
	"encoding/binary"

	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// TPKT (RFC 1006) frames every H.225.0 call-signalling message on TCP:
// version 3, a reserved zero octet, and the big-endian length of the whole
// packet, header included.
const tpktHeaderLen = 4

// Frame returns the length of the TPKT packet at the start of buf, or
// proxy.ErrNeedMore while buf is shorter than its header. It refuses
// anything that is not a TPKT as soon as the first octets show it, so a
// client speaking another protocol is turned away without waiting. A packet
// of length 4 carries nothing: endpoints send it to keep the connection
// alive (H.460.17 connections idle for long).
func Frame(buf []byte) (int, error) {
	switch {
	case len(buf) >= 1 && buf[0] != 3, len(buf) >= 2 && buf[1] != 0:
		return 0, errTPKT
	case len(buf) < tpktHeaderLen:
		return 0, proxy.ErrNeedMore
	}
	n := int(binary.BigEndian.Uint16(buf[2:]))
	if n < tpktHeaderLen {
		return 0, errTPKT
	}
	return n, nil
}
