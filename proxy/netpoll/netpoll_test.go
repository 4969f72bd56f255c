//go:build linux

package netpoll

import (
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
)

type waiter struct {
	token uint64
	ready chan struct{}
}

func (w *waiter) SetToken(t uint64) { w.token = t }
func (w *waiter) PollReady()        { w.ready <- struct{}{} }

// pair returns both ends of a loopback TCP connection.
func pair(t *testing.T) (a, b *net.TCPConn) { return testpeer.TCPPair(t, nil) }

// TestArmOneShot: an armed socket's waiter is called once when bytes
// arrive, not before, and again only after it is armed again; a waiter
// without a sweep (nil Swept) works alike.
func TestArmOneShot(t *testing.T) {
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	a, b := pair(t)
	w := &waiter{ready: make(chan struct{}, 4)}
	p.Add(nil, 0, w)
	defer p.Remove(nil, w.token)
	raw, err := b.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Arm(raw, w.token); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.ready:
		t.Fatal("ready before any bytes")
	case <-time.After(50 * time.Millisecond):
	}
	a.Write([]byte("x"))
	select {
	case <-w.ready:
	case <-time.After(5 * time.Second):
		t.Fatal("not ready after a byte arrived")
	}
	a.Write([]byte("y")) // unread bytes, but the wait was one-shot
	select {
	case <-w.ready:
		t.Fatal("ready twice for one arm")
	case <-time.After(50 * time.Millisecond):
	}
	if err := p.Arm(raw, w.token); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.ready: // readable already: at once
	case <-time.After(5 * time.Second):
		t.Fatal("re-armed on a readable socket: not ready")
	}
	b.Close()
	if err := p.Arm(raw, w.token); err == nil || err == syscall.ENOSYS {
		t.Fatalf("arming a closed socket: %v, want an error", err)
	}
}
