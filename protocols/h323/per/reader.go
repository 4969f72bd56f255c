// Package per reads the aligned variant of the ASN.1 Packed Encoding Rules
// (ITU-T X.691), the encoding of H.225.0. It is the bit-level layer under
// gatehouse's H.323 sniffer: it knows how PER lays out bitmaps, lengths,
// integers, strings and open types, and nothing of H.225.0, whose walker
// (package h323) says which of these come in which order.
//
// Only what a walker of H.225.0 needs is here. Lengths of 16K and more
// (fragmented encodings) and SEQUENCEs with more than 64 extension
// additions are refused: H.225.0 has neither, and a packet that claims
// them is an attack, not a phone.
//
// A Reader is sticky: after the first error every read returns a zero value
// and Err reports that error. A walker can so read a whole structure and
// look at Err once, as long as each of its loops also stops on Err (a count
// read before the error may be large; reads after it cost nothing). Slices
// returned point into the input, with their capacity cut at their end; the
// Reader itself allocates nothing but its errors.
package per

import (
	"errors"
	"fmt"
	"math/bits"
)

// Errors a Reader stops at. Err wraps them with the bit offset.
var (
	ErrTruncated   = errors.New("per: read past the end")
	ErrRange       = errors.New("per: value outside its constraint")
	ErrFragmented  = errors.New("per: fragmented length (16K or more)")
	ErrExtensions  = errors.New("per: more than 64 extension additions")
	ErrUnsupported = errors.New("per: constraint not supported")
	ErrTrailing    = errors.New("per: data after the value")
)

// Unbounded is the upper bound of a length or size without one.
const Unbounded = -1

// maxConstrained bounds the constrained ranges Constrained accepts: H.225.0
// has none wider than 32 bits, and a wider one would overflow.
const maxConstrained = 1 << 32

// A Reader reads PER-encoded values from a byte slice, bit by bit.
type Reader struct {
	buf []byte
	off int // bits read so far
	err error
}

// NewReader returns a Reader of the complete encoding b.
func NewReader(b []byte) *Reader { return &Reader{buf: b} }

// Err returns the first error met, wrapped with its bit offset, or nil.
func (r *Reader) Err() error { return r.err }

// Remaining returns the number of bits not read yet.
func (r *Reader) Remaining() int {
	if r.err != nil {
		return 0
	}
	return 8*len(r.buf) - r.off
}

// Fail stops the Reader at err, for a walker that read a value it cannot
// accept. Only the first error is kept.
func (r *Reader) Fail(err error) {
	if r.err == nil {
		r.err = fmt.Errorf("%w (bit %d)", err, r.off)
	}
}

// End checks that a complete encoding, such as the contents of an open
// type, has been read up to the padding of its last octet.
func (r *Reader) End() {
	if r.Remaining() >= 8 {
		r.Fail(ErrTrailing)
	}
}

// Bits reads an n-bit unsigned number, n at most 64, most significant bit
// first.
func (r *Reader) Bits(n int) uint64 {
	if r.err != nil {
		return 0
	}
	if n < 0 || n > 64 {
		r.Fail(ErrUnsupported)
		return 0
	}
	if n > r.Remaining() {
		r.Fail(ErrTruncated)
		return 0
	}
	var v uint64
	for n > 0 {
		used := r.off % 8
		take := min(8-used, n)
		b := uint64(r.buf[r.off/8]) >> (8 - used - take) & (1<<take - 1)
		v = v<<take | b
		r.off += take
		n -= take
	}
	return v
}

// Bool reads one bit: a BOOLEAN, an extension bit or a presence bit.
func (r *Reader) Bool() bool { return r.Bits(1) == 1 }

// Align skips the padding up to the next octet boundary.
func (r *Reader) Align() {
	if r.err == nil {
		r.off = (r.off + 7) &^ 7
	}
}

// Octets reads n octet-aligned octets.
func (r *Reader) Octets(n int) []byte {
	if n == 0 || r.err != nil {
		return nil
	}
	r.Align()
	if n < 0 || n > r.Remaining()/8 {
		r.Fail(ErrTruncated)
		return nil
	}
	start := r.off / 8
	r.off += 8 * n
	return r.buf[start : start+n : start+n]
}

// field reads nbits bits as octets: in place when they are octet-aligned
// and whole, else copied. Only fields of at most 16 bits are ever unaligned
// (X.691 16.6, 30.5.6), so a copy is small.
func (r *Reader) field(nbits int) []byte {
	if r.err != nil || nbits == 0 {
		return nil
	}
	if r.off%8 == 0 && nbits%8 == 0 {
		return r.Octets(nbits / 8)
	}
	if nbits > 16 || nbits > r.Remaining() {
		r.Fail(ErrTruncated)
		return nil
	}
	out := make([]byte, (nbits+7)/8)
	for i := range out {
		w := min(8, nbits-8*i)
		out[i] = byte(r.Bits(w) << (8 - w))
	}
	return out
}

// Constrained reads a constrained whole number in lb..ub (X.691 11.5.7): a
// bit-field for ranges up to 255, one aligned octet for 256, two for up to
// 64K, and a length-prefixed run of aligned octets beyond that.
func (r *Reader) Constrained(lb, ub int64) int64 {
	if r.err != nil {
		return 0
	}
	if ub < lb || ub-lb >= maxConstrained {
		r.Fail(ErrUnsupported)
		return 0
	}
	rng := uint64(ub-lb) + 1
	var v uint64
	switch {
	case rng == 1:
		return lb
	case rng <= 255:
		v = r.Bits(bits.Len64(rng - 1))
	case rng == 256:
		r.Align()
		v = r.Bits(8)
	case rng <= 1<<16:
		r.Align()
		v = r.Bits(16)
	default:
		octets := (bits.Len64(rng-1) + 7) / 8
		n := r.Constrained(1, int64(octets))
		r.Align()
		v = r.Bits(8 * int(n))
	}
	if v > rng-1 {
		r.Fail(ErrRange)
	}
	if r.err != nil {
		return 0
	}
	return lb + int64(v)
}

// Int reads an INTEGER constrained to lb..ub, whose constraint may carry an
// extension marker ("INTEGER(0..16383, ...)"). An extended value is read as
// an unconstrained whole number of at most 8 octets.
func (r *Reader) Int(lb, ub int64, extensible bool) int64 {
	if !extensible || !r.Bool() {
		return r.Constrained(lb, ub)
	}
	n := r.Length(0, Unbounded)
	if r.err == nil && (n == 0 || n > 8) {
		r.Fail(ErrUnsupported)
		return 0
	}
	r.Align()
	return int64(r.Bits(8*n)<<(64-8*n)) >> (64 - 8*n) // two's complement
}

// Length reads a length determinant for a count in lb..ub (ub Unbounded for
// none) (X.691 11.9): nothing for a fixed size, a constrained whole number
// when ub is below 64K, else the general form of one or two aligned octets.
func (r *Reader) Length(lb, ub int) int {
	if r.err != nil {
		return 0
	}
	if ub != Unbounded && ub < 1<<16 {
		if lb == ub {
			return lb
		}
		return int(r.Constrained(int64(lb), int64(ub)))
	}
	r.Align()
	var n int
	switch b := r.Bits(8); {
	case b&0x80 == 0:
		n = int(b)
	case b&0xC0 == 0x80:
		n = int(b&0x3F)<<8 | int(r.Bits(8))
	default:
		r.Fail(ErrFragmented)
		return 0
	}
	if n < lb || (ub != Unbounded && n > ub) {
		r.Fail(ErrRange)
	}
	if r.err != nil {
		return 0
	}
	return n
}

// SmallNumber reads a normally small non-negative whole number (X.691
// 11.6), the index of a CHOICE's extension alternative.
func (r *Reader) SmallNumber() int {
	if !r.Bool() {
		return int(r.Bits(6))
	}
	n := r.Length(0, Unbounded)
	if r.err == nil && (n == 0 || n > 2) {
		r.Fail(ErrUnsupported)
		return 0
	}
	r.Align()
	return int(r.Bits(8 * n))
}

// A Bitmap holds presence bits in the order they were read: the bits of a
// SEQUENCE's OPTIONAL components, or of its extension additions.
type Bitmap struct {
	bits uint64
	n    int
}

// Has reports whether the i-th bit (from 0) is set.
func (b Bitmap) Has(i int) bool { return i >= 0 && i < b.n && b.bits>>(b.n-1-i)&1 == 1 }

// Len returns the number of bits.
func (b Bitmap) Len() int { return b.n }

// Sequence reads the preamble of a SEQUENCE (X.691 19): its extension bit,
// when the type is extensible, then one presence bit for each of its
// optional root components, at most 64.
func (r *Reader) Sequence(optional int, extensible bool) (opt Bitmap, extended bool) {
	if extensible {
		extended = r.Bool()
	}
	if optional > 64 {
		r.Fail(ErrUnsupported)
		return Bitmap{}, false
	}
	return Bitmap{bits: r.Bits(optional), n: optional}, extended
}

// Extensions reads the bitmap of a SEQUENCE's extension additions, which
// follows its root components when its extension bit is set (X.691 19.8).
func (r *Reader) Extensions() Bitmap {
	if r.Bool() { // the long form counts beyond 64
		r.Fail(ErrExtensions)
		return Bitmap{}
	}
	n := int(r.Bits(6)) + 1
	return Bitmap{bits: r.Bits(n), n: n}
}

// SkipExtensions skips the open types of the additions present in b.
func (r *Reader) SkipExtensions(b Bitmap) {
	for i := 0; i < b.n && r.err == nil; i++ {
		if b.Has(i) {
			r.OpenType()
		}
	}
}

// Choice reads the index of a CHOICE with root alternatives (X.691 23).
// When extended is true, index counts the extension alternatives instead,
// and the value follows as an open type.
func (r *Reader) Choice(root int, extensible bool) (index int, extended bool) {
	if extensible && r.Bool() {
		return r.SmallNumber(), true
	}
	return int(r.Constrained(0, int64(root)-1)), false
}

// OpenType reads the octets of an open type (X.691 10.2): a value encoded
// on its own, behind a length, such as an extension addition. Read it with
// a new Reader.
func (r *Reader) OpenType() []byte {
	return r.Octets(r.Length(0, Unbounded))
}

// OctetString reads an OCTET STRING of lb..ub octets (X.691 17).
func (r *Reader) OctetString(lb, ub int) []byte {
	if lb == ub && ub <= 2 {
		return r.field(8 * ub) // fixed sizes up to 2 octets are not aligned
	}
	if lb == ub && ub < 1<<16 {
		return r.Octets(ub)
	}
	return r.Octets(r.Length(lb, ub))
}

// ObjectIdentifier reads the contents octets of an OBJECT IDENTIFIER.
func (r *Reader) ObjectIdentifier() []byte { return r.OctetString(0, Unbounded) }

// charCount reads the length of a character string of lb..ub characters
// of b bits each and aligns for the characters when the string can be
// longer than 16 bits. It returns 0 when the string is
// empty, the reader has failed, or fewer than the characters' bits are
// left (the reader then fails with ErrTruncated).
func (r *Reader) charCount(lb, ub, b int) int {
	n := r.Length(lb, ub)
	if r.err != nil || n == 0 {
		return 0
	}
	if ub == Unbounded || ub*b > 16 {
		r.Align()
	}
	if n > r.Remaining()/b {
		r.Fail(ErrTruncated)
		return 0
	}
	return n
}

// chars reads a known-multiplier character string of lb..ub characters of
// b bits each (X.691 30.5) and returns its bits as octets, or nil when b
// is not a multiple of 8 (the characters are then skipped).
func (r *Reader) chars(lb, ub, b int) []byte {
	n := r.charCount(lb, ub, b)
	if n == 0 {
		return nil
	}
	if b%8 != 0 {
		r.off += n * b
		return nil
	}
	return r.field(n * b)
}

// IA5String reads an IA5String of lb..ub characters without a permitted
// alphabet: 8 bits each in the aligned variant.
func (r *Reader) IA5String(lb, ub int) []byte { return r.chars(lb, ub, 8) }

// BMPString reads a BMPString of lb..ub characters and returns them as
// UTF-16BE octets.
func (r *Reader) BMPString(lb, ub int) []byte { return r.chars(lb, ub, 16) }

// AlphabetString reads a character string of lb..ub characters from a
// permitted alphabet too large to keep its own codes in b bits (X.691
// 30.5.4 b): each character is sent as its index in alphabet, which lists
// the characters in ascending order. An index past the alphabet fails.
func (r *Reader) AlphabetString(lb, ub, b int, alphabet string) []byte {
	if b <= 0 || b > 8 || len(alphabet) > 1<<b {
		r.Fail(ErrUnsupported)
		return nil
	}
	n := r.charCount(lb, ub, b)
	if n == 0 {
		return nil
	}
	out := make([]byte, n)
	for i := range out {
		c := int(r.Bits(b))
		if c >= len(alphabet) {
			r.Fail(ErrRange)
			return nil
		}
		out[i] = alphabet[c]
	}
	return out
}

// SkipChars skips a character string of lb..ub characters of b bits each,
// such as an IA5String restricted to the 13 characters of dialled digits
// (b = 4 in the aligned variant).
func (r *Reader) SkipChars(lb, ub, b int) {
	if b <= 0 || b > 32 {
		r.Fail(ErrUnsupported)
		return
	}
	r.chars(lb, ub, b)
}
