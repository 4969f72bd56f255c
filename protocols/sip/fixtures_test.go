package sip

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"

	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// A fixture is a conversation recorded by TestCaptureFixtures, with what the
// Sniffer and the Watcher must make of it.
type fixture struct {
	name             string
	service          string
	client, target   []string // each message's method or status code; "CRLF" for a keep-alive
	rejections       []string // what Target reports, in order
	client0, target0 []byte   // the recorded streams
}

var fixtures = []fixture{{
	// Digest challenge, registration, OPTIONS, then a wrong password.
	name:       "sipgo-register",
	service:    "example.com",
	client:     []string{"REGISTER", "REGISTER", "OPTIONS", "REGISTER", "REGISTER"},
	target:     []string{"401", "200", "200", "401", "401"},
	rejections: []string{"credentials rejected by target (REGISTER 401)"},
}, {
	// Proxy-auth challenge (ACKed), a call with SDP bodies, BYE, then a wrong password.
	name:       "sipgo-invite",
	service:    "example.com", // the From domain is Example.COM
	client:     []string{"INVITE", "ACK", "INVITE", "ACK", "BYE", "INVITE", "ACK", "INVITE", "ACK"},
	target:     []string{"407", "100", "180", "200", "200", "407", "403"},
	rejections: []string{"credentials rejected by target (INVITE 403)"},
}, {
	// Compact header names: f:, v:, i:, l:, ...
	name:    "sipgo-compact",
	service: "example.com",
	client:  []string{"REGISTER", "REGISTER"},
	target:  []string{"401", "200"},
}, {
	// A CRLF CRLF ping between two requests, and sipgo's CRLF pong.
	name:    "sipgo-keepalive",
	service: "example.com",
	client:  []string{"OPTIONS", "CRLF", "CRLF", "OPTIONS"},
	target:  []string{"200", "CRLF", "200"},
}, {
	// sipp's default uac scenario against its default uas.
	name:    "sipp-uac",
	service: "127.0.0.1",
	client:  []string{"INVITE", "ACK", "BYE"},
	target:  []string{"180", "200", "200"},
}}

func loadFixtures(t testing.TB) []fixture {
	t.Helper()
	out := make([]fixture, len(fixtures))
	for i, f := range fixtures {
		var err error
		if f.client0, err = os.ReadFile(filepath.Join("testdata", f.name+".client")); err != nil {
			t.Fatal(err)
		}
		if f.target0, err = os.ReadFile(filepath.Join("testdata", f.name+".target")); err != nil {
			t.Fatal(err)
		}
		out[i] = f
	}
	return out
}

var errIncomplete = errors.New("stream ends inside a message")

// relayFrames splits stream into messages as the proxy's relay does: bytes
// arrive in reads cut at the given offsets, and Frame is asked from the
// start of each message until the whole message is there.
func relayFrames(w proxy.Watcher, dir proxy.Direction, stream []byte, cuts ...int) ([][]byte, error) {
	var msgs [][]byte
	start, have := 0, 0
	cuts = append(cuts, len(stream))
	for _, cut := range cuts {
		have = cut
		for start < have {
			n, err := w.Frame(dir, stream[start:have])
			if errors.Is(err, proxy.ErrNeedMore) {
				break
			}
			if err != nil {
				return msgs, err
			}
			if n <= 0 {
				return msgs, errors.New("empty frame")
			}
			if start+n > have {
				break
			}
			msgs = append(msgs, stream[start:start+n])
			start += n
		}
	}
	if start != len(stream) {
		return msgs, errIncomplete
	}
	return msgs, nil
}

// summary names each message as the fixture table does, read by sipgo's
// own parser on each message alone.
func summary(t *testing.T, msgs [][]byte) []string {
	t.Helper()
	var out []string
	for _, m := range msgs {
		if isKeepAlive(m) {
			out = append(out, "CRLF")
			continue
		}
		msg, err := sipmsg.ParseMessage(m)
		if err != nil {
			t.Fatalf("sipgo cannot parse a framed message: %v\n%q", err, m)
		}
		if len(msg.Body()) != len(m)-indexBlank(m) {
			t.Fatalf("frame and body disagree:\n%q", m)
		}
		switch msg := msg.(type) {
		case *sipmsg.Request:
			out = append(out, string(msg.Method))
		case *sipmsg.Response:
			out = append(out, strconv.Itoa(msg.StatusCode))
		}
	}
	return out
}

func indexBlank(m []byte) int {
	for i := 0; i+4 <= len(m); i++ {
		if string(m[i:i+4]) == "\r\n\r\n" {
			return i + 4
		}
	}
	return len(m)
}

func newWatcher(t testing.TB, first []byte, info *proxy.ConnInfo) (*proxy.Decision, proxy.Watcher) {
	t.Helper()
	d, err := new(Sniffer).Sniff(first, info)
	if err != nil {
		t.Fatalf("Sniff: %v", err)
	}
	return d, d.Watcher
}

func equal(a, b any) bool { return reflect.DeepEqual(a, b) }

// text is a refusal's text, "" for none.
func text(r *proxy.Refusal) string {
	if r == nil {
		return ""
	}
	return r.Text()
}
