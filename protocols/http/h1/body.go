package h1

import (
	"bufio"
	"io"
)

// Limits of the chunked coding beyond the grammar: a chunk size of more
// than 16 hex digits cannot be meant (and overflows), and extensions carry
// nothing gatehouse forwards (chunks are written anew without them), so
// only a few bytes of them are read.
const (
	maxChunkSizeDigits = 16
	maxChunkExt        = 256
	maxTrailer         = 8 << 10
)

// Body reads a message body by gatehouse's own framing: a length, the
// chunked coding (strictly: size lines, the CRLF after each chunk, the
// trailer section), or to the end of the stream. Read returns io.EOF only
// at the framed end; a stream that ends earlier is io.ErrUnexpectedEOF.
type Body struct {
	br        *bufio.Reader
	chunked   bool
	untilEOF  bool
	remaining int64 // of the body, or of the current chunk
	needCRLF  bool  // a chunk's data was read; its CRLF has not been
	done      bool
	err       error
	// Trailer holds the trailer fields of a chunked body, once read.
	Trailer Header
}

// NewBody returns the body that follows a head with the given body length
// (a length, Chunked or UntilClose) in br.
func NewBody(br *bufio.Reader, length int64) *Body {
	b := &Body{br: br}
	b.Reset(br, length)
	return b
}

// Reset makes b read a new body, so that a connection can reuse one.
func (b *Body) Reset(br *bufio.Reader, length int64) {
	*b = Body{br: br}
	switch length {
	case Chunked:
		b.chunked = true
	case UntilClose:
		b.untilEOF = true
	default:
		b.remaining = length
		b.done = length == 0
	}
}

// Done reports whether the whole body has been read by its framing.
func (b *Body) Done() bool { return b.done }

// Chunked reports whether the body uses the chunked coding.
func (b *Body) Chunked() bool { return b.chunked }

// Remaining is what is left to read of a body framed by Content-Length;
// -1 for the other framings and after an error.
func (b *Body) Remaining() int64 {
	if b.chunked || b.untilEOF || b.err != nil {
		return -1
	}
	return b.remaining
}

// Advance records that n bytes of a body framed by Content-Length were
// moved past b by the caller, straight from the stream under b's reader
// (splice(2)), which had nothing buffered; n is at most Remaining.
func (b *Body) Advance(n int64) {
	b.remaining -= n
	if b.remaining <= 0 {
		b.remaining, b.done = 0, true
	}
}

func (b *Body) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.done {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if b.untilEOF {
		n, err := b.br.Read(p)
		if err == io.EOF {
			b.done = true
		} else if err != nil {
			b.err = err
		}
		return n, err
	}
	if b.chunked && b.remaining == 0 {
		if err := b.nextChunk(); err != nil {
			b.err = err
			return 0, err
		}
		if b.done {
			return 0, io.EOF
		}
	}
	if int64(len(p)) > b.remaining {
		p = p[:b.remaining]
	}
	n, err := b.br.Read(p)
	b.remaining -= int64(n)
	if b.remaining == 0 {
		if b.chunked {
			b.needCRLF = true
		} else {
			b.done = true
		}
		return n, nil
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		b.err = err
	}
	return n, err
}

// nextChunk reads up to the next chunk's data: the CRLF that ends the
// previous chunk and the size line; after the last chunk, the trailer
// section.
func (b *Body) nextChunk() error {
	if b.needCRLF {
		c, err := b.br.Peek(2)
		if err != nil {
			return unexpected(err)
		}
		if c[0] != '\r' || c[1] != '\n' {
			return ErrChunk
		}
		b.br.Discard(2)
		b.needCRLF = false
	}
	line, err := b.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return ErrChunk
	}
	if err != nil {
		return unexpected(err)
	}
	size, err := parseChunkLine(line)
	if err != nil {
		return err
	}
	if size > 0 {
		b.remaining = size
		return nil
	}
	t, err := b.readTrailer()
	if err != nil {
		return err
	}
	b.Trailer, b.done = t, true
	return nil
}

// parseChunkLine reads "1*16HEXDIG *( BWS ";" BWS name [ BWS "=" BWS value ] ) CRLF".
func parseChunkLine(line []byte) (int64, error) {
	n := len(line)
	if n < 3 || line[n-2] != '\r' {
		return 0, ErrChunk
	}
	line = line[:n-2]
	var size int64
	i := 0
	for ; i < len(line) && hexVal[line[i]] >= 0; i++ {
		if i == maxChunkSizeDigits {
			return 0, ErrChunk
		}
		size = size<<4 | int64(hexVal[line[i]])
	}
	if i == 0 || size < 0 {
		return 0, ErrChunk // no digits (a sign, say), or overflow
	}
	if ext := line[i:]; len(ext) > 0 && (len(ext) > maxChunkExt || !validChunkExt(string(ext))) {
		return 0, ErrChunk
	}
	return size, nil
}

// validChunkExt checks chunk extensions; whitespace is allowed only where
// the grammar has BWS, so "5 " alone (a size with trailing space) is
// refused.
func validChunkExt(s string) bool {
	for len(s) > 0 {
		s = skipBWS(s)
		if s == "" || s[0] != ';' {
			return false
		}
		s = skipBWS(s[1:])
		i := 0
		for i < len(s) && tchar[s[i]] {
			i++
		}
		if i == 0 {
			return false
		}
		s = skipBWS(s[i:])
		if s == "" || s[0] != '=' {
			continue
		}
		s = skipBWS(s[1:])
		if s != "" && s[0] == '"' {
			j := 1
			for j < len(s) && s[j] != '"' {
				if s[j] == '\\' {
					j++
				}
				if j < len(s) && !fieldVChar[s[j]] {
					return false
				}
				j++
			}
			if j >= len(s) {
				return false
			}
			s = s[j+1:]
			continue
		}
		j := 0
		for j < len(s) && tchar[s[j]] {
			j++
		}
		if j == 0 {
			return false
		}
		s = s[j:]
	}
	return true
}

func skipBWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	return s
}

// readTrailer reads the trailer section after the last chunk, with the
// same field rules as a head.
func (b *Body) readTrailer() (Header, error) {
	c, err := b.br.Peek(2)
	if err != nil {
		return nil, unexpected(err)
	}
	if c[0] == '\r' && c[1] == '\n' {
		b.br.Discard(2)
		return nil, nil
	}
	s, err := readHead(b.br, maxTrailer)
	if err != nil {
		if err == ErrHeadTooLarge {
			return nil, ErrTrailer
		}
		return nil, unexpected(err)
	}
	h, err := parseFields(s, nil, nil)
	if err != nil {
		return nil, ErrTrailer
	}
	return h, nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
