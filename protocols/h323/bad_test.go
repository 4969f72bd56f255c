package h323

import (
	"errors"
	"testing"

	"github.com/gatehouse-pbx/gatehouse/protocols/h323/per"
	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// q931Raw builds a Q.931 message from its octets after the call reference.
func q931Raw(msgType byte, rest ...byte) []byte {
	return append([]byte{q931Discriminator, q931CallRefLen, 0, 0, msgType}, rest...)
}

// rasParam writes the H.460.17 GenericData whose one raw parameter is
// written by raw, so that its length can lie.
func rasParam(raw func(w *perWriter)) func(w *perWriter) {
	return func(w *perWriter) {
		w.length(1, 0, -1)
		w.sequence(false, true)
		w.choice(0, 3)
		w.bit(false)
		w.constrained(featureRASTunnel, 0, 16383)
		w.length(1, 1, 512)
		w.sequence(false, true)
		w.choice(0, 3)
		w.bit(false)
		w.constrained(paramRASMessage, 0, 16383)
		w.choice(0, 12)
		raw(w)
	}
}

// nested writes a GenericData holding itself depth times.
func nested(w *perWriter, depth int) {
	w.sequence(false, depth > 0)
	w.choice(0, 3)
	w.bit(false)
	w.constrained(1000, 0, 16383)
	if depth == 0 {
		return
	}
	w.length(1, 1, 512)
	w.sequence(false, true)
	w.choice(0, 3)
	w.bit(false)
	w.constrained(1, 0, 16383)
	w.choice(11, 12)
	w.length(1, 1, 16)
	nested(w, depth-1)
}

// pduWith builds an H323-UserInformation with an empty body and the
// H323-UU-PDU extension bitmap that ext writes.
func pduWith(ext func(w *perWriter)) []byte {
	return encode(func(w *perWriter) {
		w.sequence(false, false)
		w.sequence(true, false)
		w.extChoice(1, []byte{0})
		ext(w)
	})
}

// TestSniffRefusesBadInput feeds Sniff broken packets: each must be
// refused with its stable reason (never a panic, never a read past the
// buffer, which the race detector and fuzzing would show).
func TestSniffRefusesBadInput(t *testing.T) {
	goodGRQ := grq("example.com", h323ID("alice"))
	for _, tc := range []struct {
		name   string
		packet []byte
		want   error // the reason
		cause  error // and, when set, the decoding error behind it
	}{
		{"TPKT version 2", []byte{2, 0, 0, 8, 1, 2, 3, 4}, errTPKT, nil},
		{"TPKT reserved octet set", []byte{3, 1}, errTPKT, nil},
		{"TPKT length below its header", []byte{3, 0, 0, 3}, errTPKT, nil},
		{"not Q.931", tpkt([]byte{0x09, 2, 0, 0, q931Setup}), errQ931, nil},
		{"call reference of one octet", tpkt([]byte{q931Discriminator, 1, 0, q931Facility, 0x7E, 0, 2, 5, 0}), errQ931, nil},
		{"message type with bit 8", tpkt(q931Raw(0x85)), errQ931, nil},
		{"IE length past the end", tpkt(q931Raw(q931Setup, 0x28, 0x10, 'a')), errQ931, nil},
		{"IE length missing", tpkt(q931Raw(q931Setup, 0x28)), errQ931, nil},
		{"User-user length past the end", tpkt(q931Raw(q931Setup, 0x7E, 0x01, 0x00, 0x05, 0x00)), errQ931, nil},
		{"User-user length cut", tpkt(q931Raw(q931Setup, 0x7E, 0x00)), errQ931, nil},
		{"zero-length User-user IE", tpkt(q931Raw(q931Setup, 0x7E, 0, 0)), errBadUserUser, nil},
		{"User-user IE of its discriminator alone", tpkt(q931Raw(q931Setup, 0x7E, 0, 1, 0x05)), errBadUserUser, nil},
		{"User-user IE not X.208 coded", tpkt(q931Raw(q931Setup, 0x7E, 0, 2, 0x04, 0x00)), errBadUserUser, nil},
		{"two User-user IEs", tpkt(q931Raw(q931Setup, 0x7E, 0, 2, 5, 0, 0x7E, 0, 2, 5, 0)), errTwoUserUsers, nil},
		{"no User-user IE", tpkt(q931Raw(q931Setup, ieBearer...)), errNoUserUser, nil},
		{"Connect first", tpkt(q931(0x07, 1, []byte{0})), errNotRoutable, nil},
		{"Facility without genericData", facility(facilityOptions{}), errNotRoutable, nil},
		{"Facility with only another feature", facility(facilityOptions{otherFeature: true}), errNotRoutable, nil},
		{
			"Facility with a connect body",
			tpkt(q931(q931Facility, 0, encode(func(w *perWriter) {
				w.sequence(false, false)
				w.sequence(true, false)
				w.choice(2, 7)
			}))),
			errH225, errBodyMessage,
		},
		{
			"Setup with a facility body",
			tpkt(q931(q931Setup, 1, facilityUU(facilityOptions{body: "facility"}, goodGRQ))),
			errH225, errBodyMessage,
		},
		{
			"RAS length past the end",
			tpkt(q931(q931Facility, 0, facilityUUWith(facilityOptions{}, rasParam(func(w *perWriter) {
				w.length(16000, 0, -1)
				w.octets(goodGRQ)
			})))),
			errH225, per.ErrTruncated,
		},
		{
			"fragmented RAS length",
			tpkt(q931(q931Facility, 0, facilityUUWith(facilityOptions{}, rasParam(func(w *perWriter) {
				w.align()
				w.uint(0xC1, 8)
				w.octets(make([]byte, 64))
			})))),
			errH225, per.ErrFragmented,
		},
		{
			"hundreds of extensions",
			tpkt(q931(q931Facility, 0, pduWith(func(w *perWriter) {
				w.bit(true) // the long form of the bitmap length
				w.length(300, 0, -1)
				w.octets(make([]byte, 40))
			}))),
			errH225, per.ErrExtensions,
		},
		{
			"64 extensions claimed, none there",
			tpkt(q931(q931Facility, 0, pduWith(func(w *perWriter) {
				w.bit(false)
				w.uint(63, 6)
				w.uint(^uint64(0), 64)
			}))),
			errH225, per.ErrTruncated,
		},
		{
			"GenericData nested too deep",
			tpkt(q931(q931Facility, 0, facilityUUWith(facilityOptions{}, func(w *perWriter) {
				w.length(1, 0, -1)
				nested(w, maxDepth+1)
			}))),
			errH225, errTooDeep,
		},
		{
			"too many RAS messages",
			facility(facilityOptions{}, func() [][]byte {
				ras := make([][]byte, maxRAS+1)
				for i := range ras {
					ras[i] = goodGRQ
				}
				return ras
			}()...),
			errH225, errTooManyRAS,
		},
		{
			"data after the genericData",
			tpkt(q931(q931Facility, 0, facilityUUWith(facilityOptions{}, func(w *perWriter) {
				w.length(1, 0, -1)
				w.genericData17(goodGRQ)
				w.octets([]byte{0xFF})
			}))),
			errH225, per.ErrTrailing,
		},
		{"RAS message cut short", facility(facilityOptions{}, goodGRQ[:20]), errRAS, per.ErrTruncated},
		{"gatekeeper ID with a control character", facility(facilityOptions{}, grq("example.com\n")), errBadGatekeeperID, nil},
		{"gatekeeper ID with a space", facility(facilityOptions{}, grq("example .com")), errBadGatekeeperID, nil},
		{"gatekeeper ID ending in a slash", facility(facilityOptions{}, grq("example.com/")), errBadGatekeeperID, nil},
		{"GRQ without gatekeeper ID", facility(facilityOptions{}, grq("", h323ID("alice"))), errNoGatekeeperID, nil},
		{"called URL without domain", setup([]testAlias{url("h323:bob@;x=y")}, nil, false), errNoCalledDomain, nil},
		{"called alias without @", setup([]testAlias{h323ID("bob")}, nil, false), errNoCalledDomain, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Sniffer{}.Sniff(tc.packet, &proxy.ConnInfo{})
			if d != nil || !errors.Is(err, tc.want) || err.Error() != tc.want.Error() {
				t.Fatalf("Sniff = %+v, %v; want the refusal %q", d, err, tc.want)
			}
			if tc.cause != nil && !errors.Is(err, tc.cause) {
				t.Errorf("Sniff error %v does not say it was %v", errors.Unwrap(err), tc.cause)
			}
		})
	}
}

// TestSniffWaitsForTheWholePacket: a TPKT header may arrive alone, and so
// may any part of the packet; Sniff asks for more until it is all there.
func TestSniffWaitsForTheWholePacket(t *testing.T) {
	keepAlive := []byte{3, 0, 0, 4}
	packet := append(append([]byte{}, keepAlive...), load(t, "grq_example_com")...)
	for n := 0; n < len(packet); n++ {
		if _, err := (Sniffer{}).Sniff(packet[:n], &proxy.ConnInfo{}); !errors.Is(err, proxy.ErrNeedMore) {
			t.Fatalf("Sniff of the first %d of %d octets: %v, want ErrNeedMore", n, len(packet), err)
		}
	}
	d, err := Sniffer{}.Sniff(append(packet, 3, 0), &proxy.ConnInfo{})
	if err != nil || d.Service != "example.com" {
		t.Fatalf("Sniff of the whole packet and a bit of the next = %+v, %v", d, err)
	}
}

func TestServiceName(t *testing.T) {
	for _, tc := range []struct {
		gatekeeperID, want string
	}{
		{"example.com", "example.com"},
		{"hq@example.com", "example.com"},
		{"hq@example.com/branch", "example.com/branch"},
		{"example.com/branch", "example.com/branch"},
		{"room@hq@example.com", "example.com"},    // the location ends at the last @ before the /
		{"example.com/a@b", "example.com/a@b"},    // an @ after the / belongs to the location
		{"hq@example.com/a@b", "example.com/a@b"}, // both
		{"hq@", ""},
		{"/branch", ""},
		{"", ""},
		{"example.com/", ""},
		{"exa\tmple.com", ""},
	} {
		got, ok := serviceName(tc.gatekeeperID)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("serviceName(%q) = %q, %v; want %q", tc.gatekeeperID, got, ok, tc.want)
		}
	}
}

func TestCalledDomain(t *testing.T) {
	for _, tc := range []struct {
		alias testAlias
		want  string
	}{
		{h323ID("bob@example.com"), "example.com"},
		{h323ID("bob@pbx.example.com/branch"), "pbx.example.com/branch"},
		{email("bob@example.com"), "example.com"},
		{url("h323:bob@example.com"), "example.com"},
		{url("h323:bob@example.com:1720"), "example.com"},
		{url("h323:bob@example.com;transport=tls"), "example.com"},
		{url("h323:bob@example.com?subject=x"), "example.com"},
		{h323ID("bob"), ""},
		{h323ID("bob@"), ""},
		{h323ID("bob@exa mple.com"), ""},
	} {
		a := alias{kind: tc.alias.kind, raw: []byte(tc.alias.value)}
		if tc.alias.kind == aliasH323ID {
			a.raw = nil
			for _, c := range tc.alias.value {
				a.raw = append(a.raw, byte(c>>8), byte(c))
			}
		}
		if got := calledDomain(a); got != tc.want {
			t.Errorf("calledDomain(%v) = %q, want %q", tc.alias, got, tc.want)
		}
	}
}

func TestAliasEqualFold(t *testing.T) {
	utf16be := func(s string) []byte {
		var b []byte
		for _, c := range s {
			b = append(b, byte(c>>8), byte(c))
		}
		return b
	}
	for _, tc := range []struct {
		a    alias
		s    string
		want bool
	}{
		{alias{aliasH323ID, utf16be("Alice")}, "alice", true},
		{alias{aliasH323ID, utf16be("Jürgen")}, "JÜRGEN", true},
		{alias{aliasH323ID, utf16be("alice")}, "alic", false},
		{alias{aliasH323ID, utf16be("alic")}, "alice", false},
		{alias{aliasH323ID, []byte{0, 'a', 0}}, "a", false}, // an odd octet left over
		{alias{aliasEmail, []byte("Alice@Example.com")}, "alice@example.com", true},
		{alias{aliasOther, nil}, "", false},
	} {
		if got := tc.a.equalFold(tc.s); got != tc.want {
			t.Errorf("%v.equalFold(%q) = %v", tc.a, tc.s, got)
		}
	}
	if s := bmpString([]byte{0xD8, 0x3D, 0xDE, 0x00, 0xD8, 0x00, 0, 'x'}); s != "😀\uFFFDx" {
		t.Errorf("bmpString with a surrogate pair and a lone surrogate = %q", s)
	}
}
