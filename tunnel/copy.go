package tunnel

import (
	"errors"
	"io"
	"sync"
)

// Buffer sizes of Copy: an idle stream holds only a small one while it
// waits for its next bytes; bulk transfers borrow a large one.
const (
	smallBuffer = 512 // a small request or response fits
	largeBuffer = 64 << 10
)

var largeBuffers = sync.Pool{New: func() any { b := make([]byte, largeBuffer); return &b }}

// Copy copies src to dst until EOF (a nil error) or an error, calling
// flush, when set, after every write. It waits for bytes in a small
// buffer and moves to a pooled large one while reads fill the small one,
// so that ten thousand idle streams do not each hold 64 KiB.
func Copy(dst io.Writer, src io.Reader, flush func() error) (int64, error) {
	var small [smallBuffer]byte
	buf := small[:]
	var large *[]byte
	defer func() {
		if large != nil {
			largeBuffers.Put(large)
		}
	}()
	var total int64
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
			if flush != nil {
				if ferr := flush(); ferr != nil {
					return total, ferr
				}
			}
		}
		switch {
		case errors.Is(err, io.EOF):
			return total, nil
		case err != nil:
			return total, err
		case n == len(buf) && large == nil: // more is likely waiting
			large = largeBuffers.Get().(*[]byte)
			buf = *large
		case n < len(buf)/2 && large != nil: // back to waiting
			largeBuffers.Put(large)
			large, buf = nil, small[:]
		}
	}
}
