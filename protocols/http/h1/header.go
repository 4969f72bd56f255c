package h1

import "strings"

// A Field is one header or trailer field as received: the name with its
// case, the value without surrounding whitespace.
type Field struct {
	Name, Value string
}

// Header is the fields of a message in the order received. Host,
// Content-Length and Transfer-Encoding are not in it: the parser reads them
// into the message's own fields, and the writer writes them from there.
type Header []Field

// Get returns the value of the first field named name (any case).
func (h Header) Get(name string) (string, bool) {
	for _, f := range h {
		if equalFold(f.Name, name) {
			return f.Value, true
		}
	}
	return "", false
}

// Has reports whether a field named name is present.
func (h Header) Has(name string) bool {
	_, ok := h.Get(name)
	return ok
}

// Count returns how many fields are named name.
func (h Header) Count(name string) int {
	n := 0
	for _, f := range h {
		if equalFold(f.Name, name) {
			n++
		}
	}
	return n
}

// HasToken reports whether a comma-separated list field named name holds
// token (any case), in any of its lines.
func (h Header) HasToken(name, token string) bool {
	for _, f := range h {
		if equalFold(f.Name, name) && listHas(f.Value, token) {
			return true
		}
	}
	return false
}

func listHas(v, token string) bool {
	for len(v) > 0 {
		var item string
		item, v, _ = strings.Cut(v, ",")
		if equalFold(trimOWS(item), token) {
			return true
		}
	}
	return false
}

// HopByHop reports whether a field of h belongs to one connection only
// (RFC 9110 section 7.6.1) and so must not be forwarded: Connection and the
// fields it names, Keep-Alive, TE, Trailer, Upgrade and Proxy-*.
func (h Header) HopByHop(name string) bool {
	switch len(name) {
	case 2:
		if equalFold(name, "TE") {
			return true
		}
	case 7:
		if equalFold(name, "Trailer") || equalFold(name, "Upgrade") {
			return true
		}
	case 10:
		if equalFold(name, "Connection") || equalFold(name, "Keep-Alive") {
			return true
		}
	}
	if len(name) > 6 && equalFold(name[:6], "Proxy-") {
		return true
	}
	return h.HasToken("Connection", name)
}
