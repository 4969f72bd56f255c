package ldap

import (
	"bytes"
	"errors"
	"testing"
)

// TestNonCanonicalBind takes a real bind (go-ldap's) and rewrites one
// element at a time into an encoding gatehouse does not read canonically:
// Sniff and the Watcher must refuse each, and never forward it.
func TestNonCanonicalBind(t *testing.T) {
	good := firstMessage(t, bind("cn=alice,dc=example,dc=com", "secret"))
	if good[0] != 0x30 || good[1] >= 0x80 || !bytes.Equal(good[2:5], []byte{2, 1, 1}) || good[5] != 0x60 || good[6] >= 0x80 {
		t.Fatalf("unexpected bind encoding % x", good)
	}
	// rebuild replaces good[from:to] by repl and fixes the outer length
	// (and the protocolOp's, when the change lies inside it).
	rebuild := func(from, to int, repl []byte, insideOp bool) []byte {
		b := append(append(append([]byte{}, good[:from]...), repl...), good[to:]...)
		d := len(repl) - (to - from)
		b[1] += byte(d)
		if insideOp && b[5] == 0x60 {
			b[6] += byte(d)
		}
		return b
	}
	nameAt := bytes.Index(good, []byte("cn=alice")) - 2 // its OCTET STRING header
	nameEnd := nameAt + 2 + int(good[nameAt+1])
	for _, tc := range []struct {
		name string
		in   []byte
		err  error // nil: routed
	}{
		{"as go-ldap sends it", good, nil},
		{"longer length form than needed", append([]byte{0x30, good[1] + 1}, append(append([]byte{2, 1, 1, 0x60, 0x81}, good[6:7]...), good[7:]...)...), nil},
		{"high-tag-number protocolOp", rebuild(5, 6, []byte{0x7F, 0x00}, false), errEncoding},
		{"high-tag-number messageID", rebuild(2, 3, []byte{0x1F, 0x02}, false), errEncoding},
		{"indefinite length protocolOp", append(rebuild(6, 7, []byte{0x80}, false), 0, 0), errEncoding},
		{"constructed OCTET STRING name", rebuild(nameAt, nameEnd, append([]byte{0x24, good[nameAt+1] + 2}, good[nameAt:nameEnd]...), true), errEncoding},
		{"messageID with a leading zero", rebuild(2, 5, []byte{2, 2, 0, 1}, false), errEncoding},
		{"version with a leading zero", rebuild(7, 10, []byte{2, 2, 0, 3}, true), errEncoding},
		{"empty messageID", rebuild(2, 5, []byte{2, 0}, false), errEncoding},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.err == nil {
				if err := fixLengths(tc.in); err != nil {
					t.Fatal(err)
				}
			}
			d, err := new(Sniffer).Sniff(tc.in, nil)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Sniff = %+v, %v; want %v\n% x", d, err, tc.err, tc.in)
			}
			if err == nil && d.Service != "example.com" {
				t.Fatalf("routed to %q", d.Service)
			}
			w := &watcher{service: "example.com"}
			v := w.Client(tc.in)
			if tc.err == nil {
				if v.Reply != nil || said(v.Refusal) != "" {
					t.Fatalf("later bind refused: %+v", v)
				}
				return
			}
			// A messageID gatehouse cannot read hides which operation
			// follows: malformed, as far as the watcher can tell.
			if v.Reply == nil || !errors.Is(v.Refusal, tc.err) && !errors.Is(v.Refusal, errMalformed) {
				t.Fatalf("later bind: %+v", v)
			}
			if _, _, code := ldapResult(t, v.Reply); code != 2 { // protocolError
				t.Fatalf("answered with result code %d", code)
			}
		})
	}
}

// fixLengths checks a hand-built message's outer length against its size.
func fixLengths(b []byte) error {
	n, err := frame(b)
	if err != nil {
		return err
	}
	if n != len(b) {
		return errors.New("test bug: outer length does not match")
	}
	return nil
}
