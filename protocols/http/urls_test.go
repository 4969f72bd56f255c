package http

import (
	"net/url"
	"strings"
	"testing"
)

func TestURLAllowed(t *testing.T) {
	// The contract's myPBX list.
	urls := []string{"/PBX0/MY", "/PBX0/WEBSOCKET", "/PBX0/DEVICES", "/PBX0/APPS/", "/CDR0/CALL-LIST"}
	for _, tc := range []struct {
		path string
		want bool
	}{
		{"/PBX0/MY", true},
		{"/PBX0/MY/index.htm", true},
		{"/PBX0/MYSELF", true}, // a head match, as the contract says
		{"/PBX0/WEBSOCKET", true},
		{"/PBX0/APPS/app.htm", true},
		{"/PBX0/APPS/", true},
		{"/PBX0/APPS/sub/app.htm", false}, // no further "/" after an entry ending in "/"
		{"/PBX0/APPS", false},
		{"/pbx0/my", false}, // case sensitive
		{"/PBX0/ADMIN.xml", false},
		{"/", false},
		{"", false},
		{"*", false},
		{"/PBX0/MY/../ADMIN.xml", false}, // resolves outside the list at the target
		{"/PBX0/MY/./x", false},
		{"/PBX0/MY/..", false},
		{"/PBX0/MY\\..\\ADMIN.xml", false},
		{"/CDR0/CALL-LIST?x=1", true},              // callers pass the path only; still a head match
		{"/PBX0/MY/%2e%2e/ADMIN.xml", false},       // encoded dots
		{"/PBX0/MY/%2E./ADMIN.xml", false},         // encoded in part
		{"/PBX0/MY/%252e%252e/ADMIN.xml", false},   // encoded twice
		{"/PBX0/MY/..;/ADMIN.xml", false},          // ".." to Tomcat and Jetty
		{"/PBX0/MY;jsessionid=1", false},           // any path parameter
		{"/PBX0/MY%2f..%2fADMIN.xml", false},       // encoded slashes
		{"/PBX0/MY/%5c..%5cADMIN.xml", false},      // encoded backslashes
		{"/PBX0/MY/%c0%ae%c0%ae/ADMIN.xml", false}, // overlong UTF-8 dots
		{"/PBX0/MY/%00", false},                    // NUL
		{"/PBX0/MY/%zz", false},                    // not an encoding
		{"/PBX0/%4dY/x", true},                     // an encoded letter reads as itself
		{"/PBX0/MY/caf%c3%a9.htm", true},           // UTF-8 in a name
	} {
		if got := URLAllowed(urls, tc.path); got != tc.want {
			t.Errorf("URLAllowed(%q) = %v, want %v", tc.path, got, tc.want)
		}
	}
	if !URLAllowed(nil, "/anything/../goes") {
		t.Error("no list must allow every URL")
	}
	if URLAllowed([]string{}, "/x") {
		t.Error("an empty list allows nothing")
	}
}

func TestHostKey(t *testing.T) {
	for in, want := range map[string]string{
		"hq.example.com":          "hq.example.com",
		"HQ.Example.COM":          "hq.example.com",
		"hq.example.com:8443":     "hq.example.com",
		"hq.example.com.":         "hq.example.com",
		"hq.example.com.:443":     "hq.example.com",
		"[2001:db8::1]:443":       "2001:db8::1",
		"[2001:db8::1]":           "2001:db8::1",
		"192.0.2.1:80":            "192.0.2.1",
		"":                        "",
		"2001:db8::1":             "2001:db8::1",
		"hq.example.com:":         "hq.example.com",
		"evil.com@hq.example.com": "evil.com@hq.example.com",
	} {
		if got := HostKey(in); got != want {
			t.Errorf("HostKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzHostKey(f *testing.F) {
	f.Add("hq.example.com:443") // the common case
	f.Add("[::1]:80")           // bracketed IPv6 literal
	f.Add("[")                  // unterminated bracket
	f.Add(":::")                // several colons, no brackets
	f.Fuzz(func(t *testing.T, host string) {
		k := HostKey(host)
		if len(k) > len(host) {
			t.Fatalf("key %q longer than host %q", k, host)
		}
	})
}

func FuzzURLAllowed(f *testing.F) {
	f.Add("/PBX0/APPS/x")          // allowed by the "/"-terminated entry
	f.Add("/PBX0/APPS/x/y")        // a further "/" after it
	f.Add("/PBX0/MY/../x")         // dot segment
	f.Add("/PBX0/MY\\..\\x")       // backslash
	f.Add("/PBX0/MY/..;/ADMIN")    // a path parameter on a dot segment
	f.Add("/PBX0/MY/%252e%252e/x") // double encoding
	f.Add("/PBX0/MY/%c0%ae%c0%ae") // overlong UTF-8 dots
	f.Add("/PBX0/%4dY/x")          // an encoded letter: allowed, decoded
	urls := []string{"/PBX0/MY", "/PBX0/APPS/"}
	f.Fuzz(func(t *testing.T, path string) {
		if !URLAllowed(urls, path) {
			return
		}
		// However many times a target decodes it, it stays in the list and
		// has no segment that resolves elsewhere.
		p := path
		for i := 0; i < 4; i++ {
			if strings.ContainsAny(p, ";\\") {
				t.Fatalf("%q allowed, reads as %q", path, p)
			}
			for _, seg := range strings.Split(p, "/") {
				if seg == "." || seg == ".." {
					t.Fatalf("%q allowed, reads as %q", path, p)
				}
			}
			d, err := url.PathUnescape(p)
			if err != nil || d == p {
				break
			}
			p = d
		}
		if !strings.HasPrefix(p, "/PBX0/MY") && !strings.HasPrefix(p, "/PBX0/APPS/") {
			t.Fatalf("%q allowed, reads as %q", path, p)
		}
	})
}
