package h1

import (
	"bufio"
	"io"
	"strings"
	"testing"
)

// TestBodyAdvance: Remaining tells a Content-Length body's rest (and only
// that framing's), and Advance accounts for bytes moved past the reader,
// so that Done and the next Read agree with the framing.
func TestBodyAdvance(t *testing.T) {
	br := bufio.NewReader(strings.NewReader("0123456789tail"))
	b := NewBody(br, 10)
	p := make([]byte, 4)
	if n, err := b.Read(p); n != 4 || err != nil || b.Remaining() != 6 {
		t.Fatalf("read %d, %v; remaining %d", n, err, b.Remaining())
	}
	br.Discard(6) // what a splice moved
	b.Advance(6)
	if !b.Done() || b.Remaining() != 0 {
		t.Fatalf("done %v, remaining %d after the framed end", b.Done(), b.Remaining())
	}
	if n, err := b.Read(p); n != 0 || err != io.EOF {
		t.Fatalf("read after the end: %d, %v", n, err)
	}
	if rest, _ := io.ReadAll(br); string(rest) != "tail" {
		t.Fatalf("the stream after the body: %q", rest)
	}
	for _, length := range []int64{Chunked, UntilClose} {
		if r := NewBody(bufio.NewReader(strings.NewReader("")), length).Remaining(); r != -1 {
			t.Errorf("framing %d: Remaining %d, want -1", length, r)
		}
	}
}
