package sip

import (
	"errors"
	"strings"
	"testing"

	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// TestFrameFixtures frames every recorded stream in both directions, whole
// and cut into two reads at every byte offset, and one byte at a time: the
// messages must come out the same, each one a message sipgo reads alone.
func TestFrameFixtures(t *testing.T) {
	for _, f := range loadFixtures(t) {
		t.Run(f.name, func(t *testing.T) {
			_, w := newWatcher(t, f.client0, nil)
			for _, s := range []struct {
				dir    proxy.Direction
				stream []byte
				want   []string
			}{{proxy.FromClient, f.client0, f.client}, {proxy.FromTarget, f.target0, f.target}} {
				whole, err := relayFrames(w, s.dir, s.stream)
				if err != nil {
					t.Fatalf("%v: %v", s.dir, err)
				}
				if got := summary(t, whole); !equal(got, s.want) {
					t.Fatalf("%v messages: got %q, want %q", s.dir, got, s.want)
				}
				for cut := 1; cut < len(s.stream); cut++ {
					msgs, err := relayFrames(w, s.dir, s.stream, cut)
					if err != nil || !equal(msgs, whole) {
						t.Fatalf("%v cut at %d: %d messages, %v", s.dir, cut, len(msgs), err)
					}
				}
				drip := make([]int, len(s.stream))
				for i := range drip {
					drip[i] = i
				}
				if msgs, err := relayFrames(w, s.dir, s.stream, drip...); err != nil || !equal(msgs, whole) {
					t.Fatalf("%v byte by byte: %d messages, %v", s.dir, len(msgs), err)
				}
			}
		})
	}
}

const options = "OPTIONS sip:pbx@example.com SIP/2.0\r\n" +
	"Via: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bK.1\r\n" +
	"From: <sip:alice@example.com>;tag=1\r\n" +
	"To: <sip:pbx@example.com>\r\n" +
	"Call-ID: c1\r\n" +
	"CSeq: 1 OPTIONS\r\n"

func TestFrame(t *testing.T) {
	const max = 1024
	for _, tc := range []struct {
		name string
		in   string
		want int
		err  error
	}{
		{"ping", "\r\n\r\n", 2, nil},
		{"pong, then a message", "\r\nSIP/2.0 200 OK\r\n", 2, nil},
		{"half a CRLF", "\r", 0, proxy.ErrNeedMore},
		{"bare CR", "\rX", 0, ErrNotSIP},
		{"no body", options + "Content-Length: 0\r\n\r\n", len(options) + 21, nil},
		{"body announced, header block complete", options + "Content-Length: 10\r\n\r\nabc", len(options) + 22 + 10, nil},
		{"compact l:", options + "l: 3\r\n\r\nabc", len(options) + 8 + 3, nil},
		{"odd spacing and case", options + "content-LENGTH \t:  3 \r\n\r\nabc", len(options) + 25 + 3, nil},
		{"repeated, agreeing", options + "l: 3\r\nContent-Length: 3\r\n\r\nabc", len(options) + 27 + 3, nil},
		{"pipelined", options + "l: 0\r\n\r\n" + options, len(options) + 8, nil},
		{"response", "SIP/2.0 401 Unauthorized\r\nContent-Length: 0\r\n\r\n", 47, nil},
		{"header block unfinished", options, 0, proxy.ErrNeedMore},
		{"empty", "", 0, proxy.ErrNeedMore},
		{"repeated, disagreeing", options + "l: 3\r\nContent-Length: 4\r\n\r\nabcd", 0, ErrContentLength},
		{"not a number", options + "Content-Length: ten\r\n\r\n", 0, ErrContentLength},
		{"negative", options + "Content-Length: -1\r\n\r\n", 0, ErrContentLength},
		{"empty value", options + "Content-Length:\r\n\r\n", 0, ErrContentLength},
		{"folded value", options + "Content-Length:\r\n 3\r\n\r\nabc", 0, ErrContentLength},
		{"missing", options + "\r\n", 0, ErrNoContentLength},
		{"body over the cap", options + "Content-Length: 1000\r\n\r\n", 0, ErrTooLarge},
		{"overflowing length", options + "Content-Length: 99999999999999999999999\r\n\r\n", 0, ErrTooLarge},
		{"header block over the cap", options + strings.Repeat("X-Pad: 0123456789\r\n", 60), 0, ErrTooLarge},
		{"binary", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 0, ErrNotSIP},
		{"NUL", "OPT\x00", 0, ErrNotSIP},
		{"endless token", strings.Repeat("A", 40), 0, ErrNotSIP},
		{"space first", " OPTIONS", 0, ErrNotSIP},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &framer{max: max}
			n, err := f.frame([]byte(tc.in))
			if n != tc.want || !errors.Is(err, tc.err) {
				t.Fatalf("got %d, %v; want %d, %v", n, err, tc.want, tc.err)
			}
		})
	}
}

// TestFrameResumes checks that a header block trickling in is searched
// only once: the framer resumes where it stopped, and still finds a blank
// line that straddles two reads.
func TestFrameResumes(t *testing.T) {
	msg := options + "Content-Length: 0\r\n\r\n"
	for cut := 1; cut < len(msg); cut++ {
		f := &framer{max: DefaultMaxMessage}
		if _, err := f.frame([]byte(msg[:cut])); err != proxy.ErrNeedMore {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		if f.scanned > cut {
			t.Fatalf("cut at %d: scanned %d", cut, f.scanned)
		}
		if n, err := f.frame([]byte(msg)); n != len(msg) || err != nil {
			t.Fatalf("cut at %d: got %d, %v", cut, n, err)
		}
		if f.scanned != 0 {
			t.Fatalf("cut at %d: state kept after a frame", cut)
		}
	}
}
