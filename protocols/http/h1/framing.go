package h1

// framing is what a head's fields say about where its message ends, read
// the same way for requests and responses.
type framing struct {
	hosts, lengths, codings int
	host                    string // the last Host field (requests)
	cl                      int64
	te                      string
}

// parse parses the field lines after the start line. Host (when host is
// set), Content-Length and Transfer-Encoding are read into f instead of
// the returned Header.
func (f *framing) parse(fields string, host bool) (Header, error) {
	return parseFields(fields, make(Header, 0, 16), func(name, value string) (bool, error) {
		switch len(name) {
		case 4:
			if host && equalFold(name, "Host") {
				f.hosts++
				f.host = value
				return true, nil
			}
		case 14:
			if equalFold(name, "Content-Length") {
				f.lengths++
				n, err := parseContentLength(value)
				if err != nil {
					return false, err
				}
				f.cl = n
				return true, nil
			}
		case 17:
			if equalFold(name, "Transfer-Encoding") {
				f.codings++
				f.te = value
				return true, nil
			}
		}
		return false, nil
	})
}

// check refuses framing a tolerant reader could take two ways: more than
// one Content-Length, a length beside a coding, and any coding but one
// "chunked" from HTTP/1.1 (RFC 9112 section 6.1: HTTP/1.0 has none).
func (f *framing) check(minor int) error {
	switch {
	case f.lengths > 1:
		return ErrContentLength
	case f.codings > 0 && f.lengths > 0:
		return ErrFramingConflict
	case f.codings > 0 && (f.codings > 1 || minor == 0 || !equalFold(f.te, "chunked")):
		return ErrTransferEncoding
	}
	return nil
}

// closeAfter reports whether the connection ends after a message with
// header h: Connection: close, or HTTP/1.0 without keep-alive.
func closeAfter(h Header, minor int) bool {
	if minor == 0 {
		return !h.HasToken("Connection", "keep-alive")
	}
	return h.HasToken("Connection", "close")
}
