package h323

import (
	"encoding/binary"
)

// writePcap returns a classic pcap file (LINKTYPE_ETHERNET) with one
// TCP/IPv4 segment for each packet, each on a connection of its own
// between a phone and the H.225.0 port 1720 of a PBX, and sent by the PBX
// for the packets marked fromTarget.
func writePcap(packets [][]byte, fromTarget []bool) []byte {
	out := binary.LittleEndian.AppendUint32(nil, 0xA1B2C3D4)
	out = binary.LittleEndian.AppendUint16(out, 2) // version 2.4
	out = binary.LittleEndian.AppendUint16(out, 4)
	out = binary.LittleEndian.AppendUint32(out, 0)      // thiszone
	out = binary.LittleEndian.AppendUint32(out, 0)      // sigfigs
	out = binary.LittleEndian.AppendUint32(out, 262144) // snaplen
	out = binary.LittleEndian.AppendUint32(out, 1)      // Ethernet

	for i, p := range packets {
		phone := endpoint{ip: [4]byte{192, 0, 2, 10}, port: uint16(40000 + i), seq: 1000}
		pbx := endpoint{ip: [4]byte{198, 51, 100, 1}, port: 1720, seq: 5000}
		src, dst := &phone, &pbx
		if fromTarget[i] {
			src, dst = &pbx, &phone
		}
		frame := ethernetTCP(src, dst, p)
		out = binary.LittleEndian.AppendUint32(out, uint32(1700000000+i)) // ts_sec
		out = binary.LittleEndian.AppendUint32(out, 0)                    // ts_usec
		out = binary.LittleEndian.AppendUint32(out, uint32(len(frame)))
		out = binary.LittleEndian.AppendUint32(out, uint32(len(frame)))
		out = append(out, frame...)
	}
	return out
}

type endpoint struct {
	ip   [4]byte
	port uint16
	seq  uint32
}

func ethernetTCP(src, dst *endpoint, payload []byte) []byte {
	b := []byte{
		0x02, 0, 0, 0, 0, 2, // destination MAC
		0x02, 0, 0, 0, 0, 1, // source MAC
		0x08, 0x00, // IPv4
	}
	ip := make([]byte, 20)
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+20+len(payload)))
	ip[8] = 64 // TTL
	ip[9] = 6  // TCP
	copy(ip[12:], src.ip[:])
	copy(ip[16:], dst.ip[:])
	binary.BigEndian.PutUint16(ip[10:], checksum(ip))

	tcp := make([]byte, 20)
	binary.BigEndian.PutUint16(tcp[0:], src.port)
	binary.BigEndian.PutUint16(tcp[2:], dst.port)
	binary.BigEndian.PutUint32(tcp[4:], src.seq)
	binary.BigEndian.PutUint32(tcp[8:], dst.seq)
	tcp[12] = 5 << 4 // data offset
	tcp[13] = 0x18   // PSH, ACK
	binary.BigEndian.PutUint16(tcp[14:], 65535)
	pseudo := append(append(append([]byte{}, src.ip[:]...), dst.ip[:]...), 0, 6, 0, 0)
	binary.BigEndian.PutUint16(pseudo[10:], uint16(20+len(payload)))
	sum := checksum(append(append(pseudo, tcp...), payload...))
	binary.BigEndian.PutUint16(tcp[16:], sum)

	return append(append(append(b, ip...), tcp...), payload...)
}

// checksum is the Internet checksum (RFC 1071).
func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xFFFF {
		s = s>>16 + s&0xFFFF
	}
	return ^uint16(s)
}
