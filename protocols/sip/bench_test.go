package sip

import (
	"net/netip"
	"testing"

	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// BenchmarkSniff sniffs the REGISTERs a phone sends on a new connection:
// the first one, and the one answering the digest challenge. The goal is
// under 2 µs. Of the 13 allocations, 10 are sipgo's parse of the start line,
// From and Content-Length (the request, its start line and URI, the From
// header, its address and tag, the header values as strings); 3 are ours:
// the copy of those lines handed to sipgo, the Decision and its watcher.
func BenchmarkSniff(b *testing.B) {
	f := loadFixtures(b)[0] // sipgo-register
	_, w := newWatcher(b, f.client0, nil)
	msgs, err := relayFrames(w, proxy.FromClient, f.client0)
	if err != nil {
		b.Fatal(err)
	}
	info := &proxy.ConnInfo{Client: netip.MustParseAddrPort("192.0.2.7:40000")}
	for _, bc := range []struct {
		name string
		msg  []byte
	}{{"REGISTER", msgs[0]}, {"REGISTER-with-Authorization", msgs[1]}} {
		b.Run(bc.name, func(b *testing.B) {
			var s Sniffer
			b.SetBytes(int64(len(bc.msg)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Sniff(bc.msg, info); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFrame frames a recorded call, both directions, as the relay
// does for the life of every connection: it must not allocate.
func BenchmarkFrame(b *testing.B) {
	f := loadFixtures(b)[1] // sipgo-invite
	_, w := newWatcher(b, f.client0, nil)
	b.SetBytes(int64(len(f.client0) + len(f.target0)))
	b.ReportAllocs()
	for b.Loop() {
		for _, s := range []struct {
			dir    proxy.Direction
			stream []byte
		}{{proxy.FromClient, f.client0}, {proxy.FromTarget, f.target0}} {
			for buf := s.stream; len(buf) > 0; {
				n, err := w.Frame(s.dir, buf)
				if err != nil {
					b.Fatal(err)
				}
				buf = buf[n:]
			}
		}
	}
}

// BenchmarkWatcher judges a recorded call message by message: every client
// request is parsed; target messages only while a credentialed request
// awaits its answer.
func BenchmarkWatcher(b *testing.B) {
	f := loadFixtures(b)[1] // sipgo-invite
	_, w := newWatcher(b, f.client0, nil)
	up, _ := relayFrames(w, proxy.FromClient, f.client0)
	down, _ := relayFrames(w, proxy.FromTarget, f.target0)
	b.ReportAllocs()
	for b.Loop() {
		for _, m := range up {
			w.Client(m)
		}
		for _, m := range down {
			w.Target(m)
		}
	}
}
