package per

import (
	"bytes"
	"errors"
	"testing"
)

// The encodings below are worked out by hand from X.691 (aligned variant);
// the H.225.0 vectors of package h323 check the same rules against
// Wireshark.

func TestBits(t *testing.T) {
	r := NewReader([]byte{0b1011_0011, 0b0101_0101})
	if got := r.Bits(3); got != 0b101 {
		t.Errorf("Bits(3) = %b", got)
	}
	if got := r.Bits(7); got != 0b1_0011_01 {
		t.Errorf("Bits(7) across the octet boundary = %b", got)
	}
	if got := r.Bits(6); got != 0b01_0101 {
		t.Errorf("Bits(6) = %b", got)
	}
	if r.Remaining() != 0 || r.Err() != nil {
		t.Errorf("Remaining %d, Err %v", r.Remaining(), r.Err())
	}
	if r.Bool(); !errors.Is(r.Err(), ErrTruncated) {
		t.Errorf("reading past the end: %v", r.Err())
	}
}

func TestConstrained(t *testing.T) {
	for _, tc := range []struct {
		name   string
		in     []byte
		lb, ub int64
		skip   int // bits before the number
		want   int64
	}{
		{"range 7: 3-bit field", []byte{0b1010_0000}, 0, 6, 0, 5},
		{"range 1: no bits", nil, 17, 17, 0, 17},
		{"lower bound added", []byte{0b0100_0000}, 1, 4, 0, 2},
		{"range 256: one aligned octet", []byte{0x80, 0xFE}, 0, 255, 1, 254},
		{"range 65535: two aligned octets", []byte{0x00, 0x01, 0x2B}, 1, 65535, 1, 300},
		// 300 in 1..4294967295: length 2 as 1..4 (2 bits "01"), aligned 01 2B.
		{"range 2^32-1: length and octets", []byte{0b0100_0000, 0x01, 0x2B}, 1, 4294967295, 0, 300},
		{"range 2^32: one octet", []byte{0b0000_0000, 0x07}, 0, 4294967295, 0, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(tc.in)
			r.Bits(tc.skip)
			if got := r.Constrained(tc.lb, tc.ub); got != tc.want || r.Err() != nil {
				t.Errorf("Constrained = %d, %v; want %d", got, r.Err(), tc.want)
			}
		})
	}
}

func TestConstrainedOutOfRange(t *testing.T) {
	// 3 bits hold 7, beyond 0..5.
	r := NewReader([]byte{0b1110_0000})
	if r.Constrained(0, 5); !errors.Is(r.Err(), ErrRange) {
		t.Errorf("Err = %v, want ErrRange", r.Err())
	}
	r = NewReader([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0})
	if r.Constrained(0, 1<<40); !errors.Is(r.Err(), ErrUnsupported) {
		t.Errorf("a 41-bit range: Err = %v, want ErrUnsupported", r.Err())
	}
}

func TestLength(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      []byte
		lb, ub  int
		want    int
		wantErr error
	}{
		{"fixed: nothing read", nil, 16, 16, 16, nil},
		{"1..128: 7 bits", []byte{0b0000_1010}, 1, 128, 6, nil},
		{"1..512: two aligned octets", []byte{0x01, 0xFF}, 1, 512, 512, nil},
		{"unconstrained, one octet", []byte{0x7F}, 0, Unbounded, 127, nil},
		{"unconstrained, two octets", []byte{0x81, 0x00}, 0, Unbounded, 256, nil},
		{"unconstrained, largest", []byte{0xBF, 0xFF}, 0, Unbounded, 16383, nil},
		{"fragmented", []byte{0xC1}, 0, Unbounded, 0, ErrFragmented},
		{"below the lower bound", []byte{0x00}, 1, Unbounded, 0, ErrRange},
		{"truncated long form", []byte{0x81}, 0, Unbounded, 0, ErrTruncated},
		{"empty", nil, 0, Unbounded, 0, ErrTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(tc.in)
			got := r.Length(tc.lb, tc.ub)
			if !errors.Is(r.Err(), tc.wantErr) || (tc.wantErr == nil && r.Err() != nil) || got != tc.want {
				t.Errorf("Length = %d, %v; want %d, %v", got, r.Err(), tc.want, tc.wantErr)
			}
		})
	}
}

func TestChoice(t *testing.T) {
	// Root alternative 3 of 7 behind the extension bit: 0 011.
	r := NewReader([]byte{0b0011_0000})
	if i, ext := r.Choice(7, true); i != 3 || ext {
		t.Errorf("Choice = %d, %v", i, ext)
	}
	// Extension alternative 1: 1, then the small number 0 000001, then
	// the open type (aligned length 1, one octet).
	r = NewReader([]byte{0b1000_0001, 0x01, 0x00, 0xAA})
	i, ext := r.Choice(7, true)
	if i != 1 || !ext {
		t.Errorf("Choice = %d, %v", i, ext)
	}
	if ot := r.OpenType(); !bytes.Equal(ot, []byte{0x00}) {
		t.Errorf("OpenType = % x", ot)
	}
	if r.Bits(8) != 0xAA || r.Err() != nil {
		t.Errorf("not positioned after the open type: %v", r.Err())
	}
	// A small number in its long form: 1, length 1, one octet.
	r = NewReader([]byte{0x80, 0x01, 0x46})
	if n := r.SmallNumber(); n != 70 || r.Err() != nil {
		t.Errorf("SmallNumber = %d, %v", n, r.Err())
	}
}

func TestSequenceAndExtensions(t *testing.T) {
	// Extension bit 1, presence 101; then the extension bitmap: 0,
	// length-1 = 000010 (3 additions), bits 010; then the one present
	// addition as an open type.
	r := NewReader([]byte{0b1101_0000, 0b0000_0100, 0b1000_0000, 0x02, 0xBE, 0xEF, 0x77})
	opt, ext := r.Sequence(3, true)
	if !ext || opt.Len() != 3 || !opt.Has(0) || opt.Has(1) || !opt.Has(2) || opt.Has(3) || opt.Has(-1) {
		t.Fatalf("Sequence = %+v, %v", opt, ext)
	}
	r.Align() // a fictitious root component
	adds := r.Extensions()
	if adds.Len() != 3 || adds.Has(0) || !adds.Has(1) || adds.Has(2) {
		t.Fatalf("Extensions = %+v", adds)
	}
	r.SkipExtensions(adds)
	if r.Bits(8) != 0x77 || r.Err() != nil {
		t.Errorf("not positioned after the additions: %v", r.Err())
	}
}

func TestExtensionsRefused(t *testing.T) {
	// The long form of the bitmap length (more than 64 additions).
	r := NewReader([]byte{0x80, 0x01, 0x2C, 0xFF})
	if r.Extensions(); !errors.Is(r.Err(), ErrExtensions) {
		t.Errorf("long bitmap: %v", r.Err())
	}
	// 64 additions claimed present, without their open types.
	r = NewReader([]byte{0b0111_1111, 0b1111_1111, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF})
	b := r.Extensions()
	if b.Len() != 64 || r.Err() != nil {
		t.Fatalf("Extensions = %d, %v", b.Len(), r.Err())
	}
	if r.SkipExtensions(b); !errors.Is(r.Err(), ErrTruncated) {
		t.Errorf("skipping missing additions: %v", r.Err())
	}
}

func TestStrings(t *testing.T) {
	// IA5String(SIZE(1..512)): length-1 in two aligned octets, then octets.
	r := NewReader([]byte{0x00, 0x02, 'a', 'b', 'c'})
	if s := r.IA5String(1, 512); string(s) != "abc" || r.Err() != nil {
		t.Errorf("IA5String = %q, %v", s, r.Err())
	}
	// BMPString(SIZE(1..128)) after one bit: length-1 in 7 bits, aligned
	// UTF-16BE.
	r = NewReader([]byte{0b1000_0001, 0x00, 'h', 0x00, 'i'})
	r.Bool()
	if s := r.BMPString(1, 128); !bytes.Equal(s, []byte{0, 'h', 0, 'i'}) || r.Err() != nil {
		t.Errorf("BMPString = % x, %v", s, r.Err())
	}
	// dialledDigits "201" (indices 5 3 4 in "#*,0123456789"): length-1 = 2
	// in 7 bits, aligned, 4 bits each; then a bit after them.
	r = NewReader([]byte{0b0000_0100, 0x53, 0x48})
	r.SkipChars(1, 128, 4)
	if !r.Bool() || r.Err() != nil {
		t.Errorf("SkipChars left the reader misplaced: %v", r.Err())
	}
	// OCTET STRING(SIZE(2)) after one bit: not aligned, copied.
	r = NewReader([]byte{0b1_0000000, 0b1_1111111, 0b1_0000000})
	r.Bool()
	if s := r.OctetString(2, 2); !bytes.Equal(s, []byte{0x01, 0xFF}) || r.Err() != nil {
		t.Errorf("OctetString(2, 2) = % x, %v", s, r.Err())
	}
	// OCTET STRING(SIZE(4)) after one bit: aligned.
	r = NewReader([]byte{0x80, 1, 2, 3, 4})
	r.Bool()
	if s := r.OctetString(4, 4); !bytes.Equal(s, []byte{1, 2, 3, 4}) || r.Err() != nil {
		t.Errorf("OctetString(4, 4) = % x, %v", s, r.Err())
	}
	// A string longer than the input.
	r = NewReader([]byte{0x00, 0x7F, 'a'})
	if s := r.IA5String(1, 512); s != nil || !errors.Is(r.Err(), ErrTruncated) {
		t.Errorf("long IA5String = %q, %v", s, r.Err())
	}
}

func TestInt(t *testing.T) {
	// INTEGER(0..16383, ...) inside the root: 0, then two aligned octets.
	r := NewReader([]byte{0x00, 0x00, 0x11})
	if v := r.Int(0, 16383, true); v != 17 || r.Err() != nil {
		t.Errorf("Int = %d, %v", v, r.Err())
	}
	// Outside the root: 1, then length 1 and a two's complement octet.
	r = NewReader([]byte{0x80, 0x01, 0xFE})
	if v := r.Int(0, 16383, true); v != -2 || r.Err() != nil {
		t.Errorf("extended Int = %d, %v", v, r.Err())
	}
	r = NewReader([]byte{0x80, 0x09, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	if r.Int(0, 16383, true); !errors.Is(r.Err(), ErrUnsupported) {
		t.Errorf("a 9-octet Int: %v", r.Err())
	}
}

func TestStickyError(t *testing.T) {
	r := NewReader([]byte{0x05, 'a'})
	if r.OctetString(0, Unbounded); !errors.Is(r.Err(), ErrTruncated) {
		t.Fatalf("Err = %v", r.Err())
	}
	first := r.Err()
	if r.Bits(1) != 0 || r.Length(0, Unbounded) != 0 || r.OpenType() != nil || r.Remaining() != 0 {
		t.Error("reads after an error return something")
	}
	if r.Fail(ErrRange); r.Err() != first {
		t.Errorf("a later error replaced the first: %v", r.Err())
	}
}

func TestSlicesAreCapped(t *testing.T) {
	in := []byte{0x02, 'a', 'b', 'c'}
	r := NewReader(in)
	s := r.OctetString(0, Unbounded)
	_ = append(s, 'X')
	if in[3] != 'c' {
		t.Error("appending to a returned slice overwrote the input")
	}
}

func TestEnd(t *testing.T) {
	r := NewReader([]byte{0b1000_0000})
	r.Bool()
	if r.End(); r.Err() != nil {
		t.Errorf("padding counted as data: %v", r.Err())
	}
	r = NewReader([]byte{0x80, 0x00})
	r.Bool()
	if r.End(); !errors.Is(r.Err(), ErrTrailing) {
		t.Errorf("a trailing octet: %v", r.Err())
	}
}
