package http

import (
	"fmt"
	"strings"
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
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

// URLAllowed applies the contract's allowed-URL rule to a request path (the
// query string is not part of it): the path must head-match one entry, and
// where that entry ends in "/", the rest of the path must not contain
// another "/". A nil list allows every path. Matching is case sensitive.
//
// Paths that a target would resolve differently from how they read are
// refused whenever a list applies: dot segments ("/PBX0/MY/../admin") and
// backslashes, which some web servers treat as "/".
func URLAllowed(urls []string, path string) bool {
	if urls == nil {
		return true
	}
	if !cleanPath(path) {
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

// cleanPath reports whether path is absolute and free of dot segments and
// backslashes.
func cleanPath(path string) bool {
	if !strings.HasPrefix(path, "/") || strings.ContainsRune(path, '\\') {
		return false
	}
	for seg := range strings.SplitSeq(path[1:], "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	return true
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
