package http

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/gatehouse-pbx/gatehouse/configs"
)

// HostKey returns the routing key of a Host header or :authority: the host
// without its port, lower-cased, without a trailing dot.
func HostKey(host string) string {
	if host == "" {
		return ""
	}
	if host[0] == '[' { // IPv6 literal, with or without a port
		if i := strings.IndexByte(host, ']'); i > 0 {
			host = host[1:i]
		}
	} else if i := strings.LastIndexByte(host, ':'); i >= 0 && strings.Count(host, ":") == 1 {
		host = host[:i]
	}
	return configs.FoldName(strings.TrimSuffix(host, "."))
}

// URLAllowed applies the contract's allowed-URL rule to a request path as
// the client sent it, percent-encoded (the query string is not part of
// it): the decoded path must head-match one entry, and where that entry
// ends in "/", the rest of the path must not contain another "/". A nil
// list allows every path. Matching is case sensitive.
//
// Whenever a list applies, a path that some target could resolve
// differently from how gatehouse reads it is refused (see canonicalPath):
// the list is only worth what the target's reading of the path agrees
// with gatehouse's.
func URLAllowed(urls []string, rawPath string) bool {
	if urls == nil {
		return true
	}
	path, ok := canonicalPath(rawPath)
	if !ok {
		return false
	}
	for _, u := range urls {
		if !strings.HasPrefix(path, u) {
			continue
		}
		if strings.HasSuffix(u, "/") && strings.Contains(path[len(u):], "/") {
			continue
		}
		return true
	}
	return false
}

// canonicalPath decodes a raw request path and reports whether every
// target reads it the same way. Refused are:
//   - dot segments ("/PBX0/MY/../ADMIN"), which a target resolves;
//   - ';' anywhere: Tomcat and Jetty-style servers take "..;" for "..";
//   - backslashes, which some servers (IIS, embedded ones) treat as "/";
//   - percent-encoded '.', '/', '\', ';', '%' and NUL: a server that
//     decodes once more, or decodes before splitting segments, sees
//     another path ("%2e%2e", "%252e%252e", "%2f");
//   - encoded bytes that are not valid UTF-8, overlong forms such as
//     "%c0%ae" ('.') among them.
func canonicalPath(raw string) (string, bool) {
	if !strings.HasPrefix(raw, "/") {
		return "", false
	}
	var b []byte
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c <= ' ' || c >= 0x7f {
			return "", false // HTTP/2 paths are not checked byte by byte as HTTP/1 targets are
		}
		switch c {
		case ';', '\\':
			return "", false
		case '%':
			if i+2 >= len(raw) {
				return "", false
			}
			v, ok := unhex(raw[i+1], raw[i+2])
			if !ok {
				return "", false
			}
			switch v {
			case '.', '/', '\\', ';', '%', 0:
				return "", false
			}
			if b == nil {
				b = append(make([]byte, 0, len(raw)), raw[:i]...)
			}
			b = append(b, v)
			i += 2
			continue
		}
		if b != nil {
			b = append(b, c)
		}
	}
	path := raw
	if b != nil {
		if !utf8.Valid(b) {
			return "", false
		}
		path = string(b)
	}
	for seg := range strings.SplitSeq(path[1:], "/") {
		if seg == "." || seg == ".." {
			return "", false
		}
	}
	return path, true
}

func unhex(a, b byte) (byte, bool) {
	x, y := fromHex(a), fromHex(b)
	if x < 0 || y < 0 {
		return 0, false
	}
	return byte(x<<4 | y), true
}

func fromHex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}

// refusedPath names a refused path in the log line (the administrator
// tuning allow.urls needs it), cut short: the client chose it.
func refusedPath(path string) error {
	const max = 200
	if len(path) > max {
		path = path[:max] + "…"
	}
	return fmt.Errorf("path %q", path)
}
