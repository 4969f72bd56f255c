package main

import (
	"bytes"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// TestHashPasswordCommand: -h prints help and exits 0 without reading
// stdin; a password on stdin is hashed; an argument is refused.
func TestHashPasswordCommand(t *testing.T) {
	for _, h := range []string{"-h", "-help", "--help"} {
		var out, errOut bytes.Buffer
		if code := run([]string{"hash-password", h}, strings.NewReader("not read\n"), &out, &errOut); code != 0 ||
			!strings.HasPrefix(out.String(), "usage: gatehouse hash-password") || errOut.Len() != 0 {
			t.Errorf("%s: code %d, stdout %q, stderr %q", h, code, out.String(), errOut.String())
		}
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"hash-password"}, strings.NewReader("s3cret\n"), &out, &errOut); code != 0 ||
		bcrypt.CompareHashAndPassword([]byte(strings.TrimSpace(out.String())), []byte("s3cret")) != nil {
		t.Errorf("hash: code %d, %q %q", code, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	if code := run([]string{"hash-password", "s3cret"}, strings.NewReader(""), &out, &errOut); code != 2 ||
		!strings.Contains(errOut.String(), "read from stdin") || out.Len() != 0 {
		t.Errorf("argument: code %d, %q %q", code, out.String(), errOut.String())
	}
}
