package turn

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pion/stun/v3"
)

// fixture reads a datagram captured from a real client (testdata/binding,
// hex after # comment lines).
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "binding", name))
	if err != nil {
		t.Fatal(err)
	}
	var h strings.Builder
	for line := range strings.Lines(string(data)) {
		if !strings.HasPrefix(line, "#") {
			h.WriteString(strings.TrimSpace(line))
		}
	}
	b, err := hex.DecodeString(h.String())
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return b
}

// pionBinding is what pion's client (and so WebRTC stacks built on it)
// sends: a Binding request with SOFTWARE and FINGERPRINT.
func pionBinding(t testing.TB, extra ...stun.Setter) []byte {
	t.Helper()
	setters := append([]stun.Setter{stun.TransactionID, stun.BindingRequest, stun.NewSoftware("pion")}, extra...)
	m, err := stun.Build(append(setters, stun.Fingerprint)...)
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

func TestParseBindingFixtures(t *testing.T) {
	for _, tc := range []struct {
		file         string
		classic      bool
		hasChange    bool
		change       uint32
		responsePort uint16
		padding      int
	}{
		{file: "coturn-stunclient.hex", padding: -1},
		{file: "coturn-stunclient-response-port.hex", hasChange: true, change: changeIP | changePort, responsePort: 40169, padding: -1},
		{file: "coturn-natdiscovery-change-padding.hex", hasChange: true, change: changeIP | changePort, padding: 1500},
		{file: "coturn-natdiscovery-padding.hex", padding: 1500},
		{file: "vovida-stun-test1.hex", classic: true, hasChange: true, padding: -1},
		{file: "vovida-stun-change-ip.hex", classic: true, hasChange: true, change: changeIP, padding: -1},
		{file: "vovida-stun-change-port.hex", classic: true, hasChange: true, change: changePort, padding: -1},
	} {
		t.Run(tc.file, func(t *testing.T) {
			raw := fixture(t, tc.file)
			req, err := parseBinding(raw)
			if err != nil {
				t.Fatal(err)
			}
			if req.classic != tc.classic || req.hasChange != tc.hasChange || req.change != tc.change ||
				req.responsePort != tc.responsePort || req.padding != tc.padding || len(req.unknown) != 0 {
				t.Errorf("parsed %+v, want %+v", req, tc)
			}
			if !bytes.Equal(req.id[:], raw[4:20]) {
				t.Errorf("id %x, want %x", req.id, raw[4:20])
			}
		})
	}
	t.Run("pion", func(t *testing.T) {
		if req, err := parseBinding(pionBinding(t)); err != nil || req.classic || req.hasChange {
			t.Errorf("pion's Binding request: %+v, %v", req, err)
		}
	})
}

// mutate returns a copy of raw changed by f.
func mutate(raw []byte, f func([]byte) []byte) []byte { return f(bytes.Clone(raw)) }

func TestParseBindingRejects(t *testing.T) {
	classic := fixture(t, "vovida-stun-test1.hex")
	modern := fixture(t, "coturn-stunclient-response-port.hex")
	withFP := pionBinding(t)
	for _, tc := range []struct {
		name    string
		raw     []byte
		want    error // nil: any error
		unknown []stun.AttrType
	}{
		{name: "not a request", raw: mutate(modern, func(b []byte) []byte { b[1] = 0x11; return b }), want: errNotBinding},
		{name: "short header", raw: modern[:19], want: errNotBinding},
		{name: "trailing byte", raw: append(bytes.Clone(classic), 0), want: errBadLength},
		{name: "truncated", raw: classic[:len(classic)-4], want: errBadLength},
		{name: "length not a multiple of 4", raw: mutate(classic, func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[2:], 7)
			return b[:27]
		}), want: errBadLength},
		{name: "attribute overruns the message", raw: mutate(classic, func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[22:], 8)
			return b
		})},
		{name: "CHANGE-REQUEST of 8 bytes", raw: mutate(classic, func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[2:], 12)
			binary.BigEndian.PutUint16(b[22:], 8)
			return append(b, 0, 0, 0, 0)
		}), want: errBadAttribute},
		{name: "RESPONSE-PORT 0", raw: mutate(modern, func(b []byte) []byte {
			b[24], b[25] = 0, 0
			return b
		}), want: errBadAttribute},
		{name: "FINGERPRINT wrong", raw: mutate(withFP, func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), want: errFingerprint},
		{name: "FINGERPRINT in a classic request", raw: mutate(withFP, func(b []byte) []byte { b[4] = 0; return b }), want: errFingerprint},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseBinding(tc.raw)
			if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
		})
	}

	// Comprehension-required attributes the server does not know, and
	// RESPONSE-ADDRESS (RFC 3489), which it refuses to honour: listed
	// for a 420.
	for _, tc := range []struct {
		name string
		raw  []byte
		want []stun.AttrType
	}{
		{"RESPONSE-ADDRESS", mutate(classic, func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[2:], 20)
			return append(b, 0x00, 0x02, 0x00, 0x08, 0x00, 0x01, 0x00, 0x35, 203, 0, 113, 9)
		}), []stun.AttrType{attrResponseAddress}},
		{"unknown 0x7f00", pionBinding(t, stun.RawAttribute{Type: 0x7f00, Value: []byte{1, 2, 3, 4}}), []stun.AttrType{0x7f00}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := parseBinding(tc.raw)
			if err != nil || !slices.Equal(req.unknown, tc.want) {
				t.Errorf("unknown %v (%v), want %v", req.unknown, err, tc.want)
			}
		})
	}
	// Comprehension-optional ones are ignored.
	if req, err := parseBinding(pionBinding(t, stun.RawAttribute{Type: 0xc0de, Value: []byte{1}})); err != nil || len(req.unknown) != 0 {
		t.Errorf("optional attribute: %+v, %v", req, err)
	}
}

var (
	testSockets = []netip.AddrPort{
		netip.MustParseAddrPort("127.0.0.1:3478"),
		netip.MustParseAddrPort("127.0.0.1:3479"),
		netip.MustParseAddrPort("127.0.0.2:3478"),
		netip.MustParseAddrPort("127.0.0.2:3479"),
	}
	testClient = netip.MustParseAddrPort("127.0.0.5:40000")
)

// decodeReply decodes a response with pion, the cookie put back for a
// classic one, and checks that it answers req.
func decodeReply(t *testing.T, raw []byte, req []byte) *stun.Message {
	t.Helper()
	if !bytes.Equal(raw[4:20], req[4:20]) {
		t.Fatalf("response id %x, want the request's %x", raw[4:20], req[4:20])
	}
	m := &stun.Message{Raw: bytes.Clone(raw)}
	binary.BigEndian.PutUint32(m.Raw[4:8], magicCookie)
	if err := m.Decode(); err != nil {
		t.Fatalf("response does not decode: %v", err)
	}
	return m
}

func addrOfAttr(t *testing.T, m *stun.Message, typ stun.AttrType) netip.AddrPort {
	t.Helper()
	var a stun.MappedAddress
	if err := a.GetFromAs(m, typ); err != nil {
		if errors.Is(err, stun.ErrAttributeNotFound) {
			return netip.AddrPort{}
		}
		t.Fatalf("%v: %v", typ, err)
	}
	ip, _ := netip.AddrFromSlice(a.IP)
	return netip.AddrPortFrom(ip.Unmap(), uint16(a.Port))
}

func TestAnswerBinding(t *testing.T) {
	s := testSockets
	for _, tc := range []struct {
		file    string
		at      socket
		from    socket
		to      netip.AddrPort
		other   netip.AddrPort
		padding int
	}{
		{file: "coturn-stunclient.hex", at: primary, from: primary, to: testClient, other: s[altIPPort], padding: -1},
		// RESPONSE-PORT keeps the client's IP and changes its port.
		{file: "coturn-stunclient-response-port.hex", at: primary, from: altIPPort, to: netip.AddrPortFrom(testClient.Addr(), 40169), other: s[altIPPort], padding: -1},
		{file: "coturn-natdiscovery-change-padding.hex", at: primary, from: altIPPort, to: testClient, other: s[altIPPort], padding: maxPadding},
		// OTHER-ADDRESS is relative to the socket the request came on.
		{file: "coturn-natdiscovery-padding.hex", at: altIP, from: altIP, to: testClient, other: s[altPort], padding: maxPadding},
		{file: "vovida-stun-test1.hex", at: primary, from: primary, to: testClient, other: s[altIPPort], padding: -1},
		{file: "vovida-stun-change-ip.hex", at: primary, from: altIP, to: testClient, other: s[altIPPort], padding: -1},
		{file: "vovida-stun-change-port.hex", at: primary, from: altPort, to: testClient, other: s[altIPPort], padding: -1},
		{file: "vovida-stun-change-port.hex", at: altIPPort, from: altIP, to: testClient, other: s[primary], padding: -1},
	} {
		t.Run(tc.file, func(t *testing.T) {
			raw := fixture(t, tc.file)
			req, err := parseBinding(raw)
			if err != nil {
				t.Fatal(err)
			}
			r, err := answerBinding(req, tc.at, testClient, s, false)
			if err != nil || r.err != 0 {
				t.Fatalf("answer: %v, code %d", err, r.err)
			}
			if r.from != tc.from || r.to != tc.to {
				t.Errorf("sent from socket %d to %v, want %d to %v", r.from, r.to, tc.from, tc.to)
			}
			m := decodeReply(t, r.msg, raw)
			if m.Type != stun.BindingSuccess {
				t.Fatalf("type %v", m.Type)
			}
			if got := addrOfAttr(t, m, stun.AttrMappedAddress); got != testClient {
				t.Errorf("MAPPED-ADDRESS %v, want %v", got, testClient)
			}
			origin, other := stun.AttrResponseOrigin, stun.AttrOtherAddress
			if req.classic {
				origin, other = stun.AttrSourceAddress, stun.AttrChangedAddress
				// An RFC 3489 client cannot read XOR-MAPPED-ADDRESS (it
				// is XORed with a cookie it did not send) nor check a
				// FINGERPRINT; RFC 5780's names are not its either.
				for _, a := range []stun.AttrType{stun.AttrXORMappedAddress, stun.AttrFingerprint, stun.AttrResponseOrigin, stun.AttrOtherAddress} {
					if m.Contains(a) {
						t.Errorf("classic response carries %v", a)
					}
				}
			} else {
				var x stun.XORMappedAddress
				if err := x.GetFrom(m); err != nil || x.Port != int(testClient.Port()) || !x.IP.Equal(testClient.Addr().AsSlice()) {
					t.Errorf("XOR-MAPPED-ADDRESS %v (%v)", x, err)
				}
				if err := stun.Fingerprint.Check(m); err != nil {
					t.Errorf("FINGERPRINT: %v", err)
				}
				if m.Contains(stun.AttrSourceAddress) || m.Contains(stun.AttrChangedAddress) {
					t.Error("RFC 5780 response carries RFC 3489 attributes")
				}
			}
			if got := addrOfAttr(t, m, origin); got != s[tc.from] {
				t.Errorf("%v %v, want %v", origin, got, s[tc.from])
			}
			if got := addrOfAttr(t, m, other); got != tc.other {
				t.Errorf("%v %v, want %v", other, got, tc.other)
			}
			pad, err := m.Get(stun.AttrPadding)
			if tc.padding < 0 && err == nil || tc.padding >= 0 && len(pad) != tc.padding {
				t.Errorf("PADDING of %d bytes (%v), want %d", len(pad), err, tc.padding)
			}
		})
	}
}

func TestAnswerBindingErrors(t *testing.T) {
	one := testSockets[:1]
	for _, tc := range []struct {
		name    string
		raw     []byte
		addrs   []netip.AddrPort
		stream  bool
		code    stun.ErrorCode // 0: answered
		unknown []stun.AttrType
	}{
		// RFC 5780 §6.1: CHANGE-REQUEST without an alternate address.
		{name: "change without alternate", raw: fixture(t, "coturn-natdiscovery-change-padding.hex"), addrs: one,
			code: stun.CodeUnknownAttribute, unknown: []stun.AttrType{stun.AttrChangeRequest}},
		{name: "no flags without alternate", raw: pionBinding(t, stun.RawAttribute{Type: stun.AttrChangeRequest, Value: make([]byte, 4)}), addrs: one,
			code: stun.CodeUnknownAttribute, unknown: []stun.AttrType{stun.AttrChangeRequest}},
		// RFC 3489 has no such error: test I (no flags) is answered, a change is refused.
		{name: "classic test I without alternate", raw: fixture(t, "vovida-stun-test1.hex"), addrs: one},
		{name: "classic change without alternate", raw: fixture(t, "vovida-stun-change-ip.hex"), addrs: one,
			code: stun.CodeUnknownAttribute, unknown: []stun.AttrType{stun.AttrChangeRequest, stun.AttrChangeRequest}},
		{name: "change over TCP", raw: fixture(t, "coturn-natdiscovery-change-padding.hex"), addrs: one, stream: true,
			code: stun.CodeUnknownAttribute, unknown: []stun.AttrType{stun.AttrChangeRequest}},
		{name: "RESPONSE-PORT over TCP", raw: pionBinding(t, stun.RawAttribute{Type: stun.AttrResponsePort, Value: []byte{0x30, 0x39, 0, 0}}), addrs: one, stream: true,
			code: stun.CodeBadRequest},
		{name: "RESPONSE-PORT with PADDING", raw: pionBinding(t, stun.RawAttribute{Type: stun.AttrResponsePort, Value: []byte{0x30, 0x39, 0, 0}},
			stun.RawAttribute{Type: stun.AttrPadding, Value: make([]byte, 8)}), addrs: testSockets, code: stun.CodeBadRequest},
		{name: "unknown attribute", raw: pionBinding(t, stun.RawAttribute{Type: 0x7f00, Value: []byte{1, 2, 3, 4}}), addrs: testSockets,
			code: stun.CodeUnknownAttribute, unknown: []stun.AttrType{0x7f00}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := parseBinding(tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			r, err := answerBinding(req, primary, testClient, tc.addrs, tc.stream)
			if err != nil {
				t.Fatal(err)
			}
			if r.err != tc.code || r.from != primary || r.to != testClient {
				t.Fatalf("code %d from socket %d to %v, want %d from the primary to the client", r.err, r.from, r.to, tc.code)
			}
			m := decodeReply(t, r.msg, tc.raw)
			if tc.code == 0 {
				if m.Type != stun.BindingSuccess {
					t.Errorf("type %v, want a success", m.Type)
				}
				return
			}
			var ec stun.ErrorCodeAttribute
			if m.Type != stun.BindingError || ec.GetFrom(m) != nil || ec.Code != tc.code {
				t.Errorf("type %v, %v; want a Binding error %d", m.Type, ec, tc.code)
			}
			var ua stun.UnknownAttributes
			if err := ua.GetFrom(m); len(tc.unknown) > 0 && (err != nil || !slices.Equal(ua, tc.unknown)) {
				t.Errorf("UNKNOWN-ATTRIBUTES %v (%v), want %v", ua, err, tc.unknown)
			}
			if m.Contains(stun.AttrMappedAddress) || m.Contains(stun.AttrXORMappedAddress) {
				t.Error("an error response carries a mapped address")
			}
		})
	}
}

// FuzzParseBinding: parseBinding never panics, and what it accepts gets a
// reply that decodes, answers the request's transaction and is sent from
// one of the sockets.
func FuzzParseBinding(f *testing.F) {
	for _, name := range []string{
		"coturn-stunclient.hex",                  // no attributes
		"coturn-stunclient-response-port.hex",    // RESPONSE-PORT, CHANGE-REQUEST both flags
		"coturn-natdiscovery-change-padding.hex", // CHANGE-REQUEST and a 1500-byte PADDING
		"coturn-natdiscovery-padding.hex",        // PADDING alone
		"vovida-stun-test1.hex",                  // RFC 3489, CHANGE-REQUEST without flags
		"vovida-stun-change-ip.hex",              // RFC 3489, change IP
		"vovida-stun-change-port.hex",            // RFC 3489, change port
	} {
		f.Add(fixture(f, name))
	}
	f.Add(pionBinding(f)) // SOFTWARE and FINGERPRINT
	// An unknown comprehension-required attribute: the 420 path.
	f.Add(pionBinding(f, stun.RawAttribute{Type: 0x7f00, Value: []byte{1, 2, 3}}))
	// RFC 3489 RESPONSE-ADDRESS, refused with an odd UNKNOWN-ATTRIBUTES list.
	f.Add([]byte{0, 1, 0, 12, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 0, 2, 0, 8, 0, 1, 0, 53, 192, 0, 2, 1})
	f.Fuzz(func(t *testing.T, raw []byte) {
		req, err := parseBinding(raw)
		if err != nil {
			return
		}
		for _, addrs := range [][]netip.AddrPort{testSockets, testSockets[:1]} {
			for _, stream := range []bool{false, true} {
				r, err := answerBinding(req, primary, testClient, addrs, stream)
				if err != nil {
					t.Fatalf("no answer: %v", err)
				}
				if int(r.from) >= len(addrs) || (stream && r.from != primary) {
					t.Fatalf("from socket %d of %d", r.from, len(addrs))
				}
				if r.to.Addr() != testClient.Addr() {
					t.Fatalf("sent to %v", r.to)
				}
				decodeReply(t, r.msg, raw)
				if len(r.msg) > len(raw)+200 {
					t.Fatalf("%d-byte response to a %d-byte request", len(r.msg), len(raw))
				}
			}
		}
	})
}
