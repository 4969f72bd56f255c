package h1

import (
	"bufio"
	"strconv"
)

// WriteField writes one "name: value" line.
func WriteField(w *bufio.Writer, name, value string) {
	w.WriteString(name)
	w.WriteString(": ")
	w.WriteString(value)
	w.WriteString("\r\n")
}

// WriteFields writes every field of h that is not hop-by-hop and that skip
// (when not nil) does not exclude. The values were checked when parsed, so
// each is written as one line.
func WriteFields(w *bufio.Writer, h Header, skip func(name string) bool) {
	named := h.Has("Connection") // only then can a field be hop-by-hop by name
	for _, f := range h {
		if skip != nil && skip(f.Name) {
			continue
		}
		if named {
			if h.HopByHop(f.Name) {
				continue
			}
		} else if Header(nil).HopByHop(f.Name) {
			continue
		}
		WriteField(w, f.Name, f.Value)
	}
}

// WriteInt writes n in decimal.
func WriteInt(w *bufio.Writer, n int64) {
	w.Write(strconv.AppendInt(w.AvailableBuffer(), n, 10))
}

// WriteChunk writes p as one chunk (nothing for an empty p, which would
// end the body).
func WriteChunk(w *bufio.Writer, p []byte) {
	if len(p) == 0 {
		return
	}
	w.Write(strconv.AppendInt(w.AvailableBuffer(), int64(len(p)), 16))
	w.WriteString("\r\n")
	w.Write(p)
	w.WriteString("\r\n")
}

// WriteLastChunk ends a chunked body, with the trailer fields that may be
// forwarded: none that frames, routes or belongs to the connection.
func WriteLastChunk(w *bufio.Writer, trailer Header) {
	w.WriteString("0\r\n")
	WriteFields(w, trailer, trailerExcluded)
	w.WriteString("\r\n")
}

// trailerExcluded names fields a trailer must not carry (RFC 9110
// section 6.5.1: framing, routing, authentication, request modifiers).
func trailerExcluded(name string) bool {
	for _, n := range [...]string{"Content-Length", "Transfer-Encoding", "Host", "Authorization",
		"Cookie", "Set-Cookie", "Content-Type", "Content-Encoding", "Content-Range", "Expect", "Max-Forwards", "Range"} {
		if equalFold(name, n) {
			return true
		}
	}
	return false
}
