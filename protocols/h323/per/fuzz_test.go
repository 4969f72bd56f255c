package per

import "testing"

// FuzzReader runs a program of reads over arbitrary data: each octet of
// prog picks a read and its constraint. Whatever the data claims, a Reader
// must not panic, never move backwards or past the end, return slices
// longer than the data, or allocate for a length it was told.
func FuzzReader(f *testing.F) {
	f.Add([]byte{0x00, 0x01, 0x12, 0x23}, []byte{0xA5, 0x81, 0x00, 0xFF, 0xFF})                // bit-fields, constrained numbers, lengths
	f.Add([]byte{0x06, 0x06, 0x07}, []byte{0x80, 0x01, 0x2C, 0xFF})                            // the long extension bitmap form
	f.Add([]byte{0x06}, []byte{0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF})          // 64 additions claimed present
	f.Add([]byte{0x07, 0x07}, []byte{0xC1, 0x00})                                              // a fragmented open type length
	f.Add([]byte{0x08, 0x18, 0xF8}, []byte{0xBF, 0xFF, 0x00})                                  // octet strings fixed, unaligned, absurd
	f.Add([]byte{0x09, 0x19, 0x0A, 0x0B, 0x1B}, []byte{0x00, 0x02, 'a', 'b', 'c', 0x80, 0x01}) // strings and extended integers
	f.Fuzz(func(t *testing.T, prog, data []byte) {
		r := NewReader(data)
		if len(prog) > 256 {
			prog = prog[:256]
		}
		allocs := testing.AllocsPerRun(1, func() {
			r := NewReader(data)
			for _, op := range prog {
				step(r, op)
			}
		})
		if !raceEnabled && allocs > float64(len(prog)+2) { // a 2-octet copy or an error per step at most
			t.Fatalf("%v allocations for %d reads", allocs, len(prog))
		}
		for _, op := range prog {
			before := r.Remaining()
			out := step(r, op)
			after := r.Remaining()
			if after < 0 || after > before || len(out) > len(data) {
				t.Fatalf("op %#x: remaining %d -> %d, %d octets out of %d", op, before, after, len(out), len(data))
			}
			if r.Err() != nil && (after != 0 || out != nil) {
				t.Fatalf("op %#x: read %d octets, %d bits left after %v", op, len(out), after, r.Err())
			}
		}
	})
}

// step performs the read op names: its low nibble the kind, its high
// nibble a parameter.
func step(r *Reader, op byte) []byte {
	a := int(op >> 4)
	switch op & 0x0F {
	case 0:
		r.Bits(4 * a)
	case 1:
		ub := int64(1)<<(2*a) - 1
		if a == 15 {
			ub = 1<<32 - 1
		}
		r.Constrained(0, ub)
	case 2:
		r.Length(a, Unbounded)
	case 3:
		r.Length(0, a*a*300)
	case 4:
		r.Choice(a+1, a%2 == 0)
	case 5:
		r.Sequence(4*a, a%2 == 1)
	case 6:
		r.SkipExtensions(r.Extensions())
	case 7:
		return r.OpenType()
	case 8:
		if a == 15 {
			return r.OctetString(0, Unbounded)
		}
		return r.OctetString(a, a)
	case 9:
		if a%2 == 0 {
			return r.IA5String(1, 512)
		}
		return r.BMPString(1, 128)
	case 10:
		r.SkipChars(0, 10*a, 4)
	case 11:
		r.Int(0, 16383, true)
		r.SmallNumber()
	case 12:
		r.Align()
		r.End()
	}
	return nil
}
