package sockio

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
)

// pair returns a connected loopback pair: ours wrapped, theirs plain net.
func pair(t testing.TB) (*Conn, *net.TCPConn) {
	t.Helper()
	c, a := testpeer.TCPPair(t, nil)
	return New(c), a
}

// Bytes cross both ways whole, through full socket buffers (the EAGAIN
// waits) and small reads, and the peer's end reads as io.EOF.
func TestBothWays(t *testing.T) {
	s, peer := pair(t)
	out := make([]byte, 8<<20)
	rand.Read(out)
	var wg sync.WaitGroup
	var got []byte
	var rerr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		// The peer reads slowly at first, so that our writes fill its buffer.
		time.Sleep(50 * time.Millisecond)
		got, rerr = io.ReadAll(peer)
	}()
	if n, err := s.Write(out); n != len(out) || err != nil {
		t.Fatalf("Write: %d, %v", n, err)
	}
	s.CloseWrite() // promoted from the *net.TCPConn
	wg.Wait()
	if rerr != nil || !bytes.Equal(got, out) {
		t.Fatalf("peer read %d bytes (%v), want the %d written", len(got), rerr, len(out))
	}

	back := make([]byte, 3<<20)
	rand.Read(back)
	go func() { peer.Write(back); peer.CloseWrite() }()
	var in bytes.Buffer
	buf := make([]byte, 1000) // many small reads
	for {
		n, err := s.Read(buf)
		in.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
	}
	if !bytes.Equal(in.Bytes(), back) {
		t.Fatalf("read %d bytes, want the %d sent", in.Len(), len(back))
	}
	if n, err := s.Read(nil); n != 0 || err != nil {
		t.Fatalf("empty Read: %d, %v", n, err)
	}
}

// A deadline ends a wait as net's does: the same error, word for word.
func TestDeadlineLikeNet(t *testing.T) {
	s, peer := pair(t)
	s.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	_, err := s.Read(make([]byte, 10))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read past its deadline: %v, want a timeout", err)
	}
	// The same wait on the peer's plain net conn.
	peer.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	_, want := peer.Read(make([]byte, 10))
	if got, want := swapAddrs(err.Error(), s), want.Error(); got != want {
		t.Fatalf("deadline error %q, net says %q", got, want)
	}
	// A Write that cannot finish before its deadline (nobody reads).
	s.SetReadDeadline(time.Time{})
	s.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	n, err := s.Write(make([]byte, 64<<20))
	if !errors.Is(err, os.ErrDeadlineExceeded) || n >= 64<<20 {
		t.Fatalf("Write past its deadline: %d, %v", n, err)
	}
}

// swapAddrs rewrites an error of s's as the peer would word it (its
// source and address swapped), to compare it with the peer's own.
func swapAddrs(msg string, s *Conn) string {
	l, r := s.LocalAddr().String(), s.RemoteAddr().String()
	return string(bytes.ReplaceAll(bytes.ReplaceAll(bytes.ReplaceAll([]byte(msg), []byte(l), []byte("\x00")), []byte(r), []byte(l)), []byte("\x00"), []byte(r)))
}

// Close from another goroutine ends a waiting Read with net.ErrClosed.
func TestCloseEndsWait(t *testing.T) {
	s, _ := pair(t)
	done := make(chan error, 1)
	go func() {
		_, err := s.Read(make([]byte, 10))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	s.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the waiting Read")
	}
	if _, err := s.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close: %v, want net.ErrClosed", err)
	}
}

// A reset by the peer is the system call's error, wrapped as net wraps it.
func TestResetLikeNet(t *testing.T) {
	s, peer := pair(t)
	peer.SetLinger(0)
	peer.Close()
	time.Sleep(20 * time.Millisecond)
	_, err := s.Read(make([]byte, 10))
	var oe *net.OpError
	if !errors.Is(err, syscall.ECONNRESET) || !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("Read after a reset: %v, want read: connection reset by peer", err)
	}
	if got := err.Error(); got != "read tcp "+s.LocalAddr().String()+"->"+s.RemoteAddr().String()+": read: connection reset by peer" {
		t.Fatalf("reset error %q", got)
	}
}

// Reads and writes may run at once, as on any net.Conn (go test -race).
func TestConcurrentReadWrite(t *testing.T) {
	s, peer := pair(t)
	go io.Copy(peer, peer) // an echo
	const n = 1 << 20
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		chunk := make([]byte, 1500)
		for sent := 0; sent < n; sent += len(chunk) {
			if _, err := s.Write(chunk); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	got, err := io.ReadFull(s, make([]byte, n))
	wg.Wait()
	if err != nil || got != n {
		t.Fatalf("echoed %d bytes: %v", got, err)
	}
}

func TestWrapAndTCP(t *testing.T) {
	s, peer := pair(t)
	if w, ok := Wrap(peer).(*Conn); !ok || w.TCPConn != peer {
		t.Fatal("Wrap of a *net.TCPConn is no Conn over it")
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if Wrap(a) != a {
		t.Fatal("Wrap changed a conn that is no TCP")
	}
	if tc, ok := TCP(s); !ok || tc != s.TCPConn {
		t.Fatal("TCP of a Conn is not its *net.TCPConn")
	}
	if tc, ok := TCP(peer); !ok || tc != peer {
		t.Fatal("TCP of a *net.TCPConn is not itself")
	}
	if _, ok := TCP(a); ok {
		t.Fatal("TCP of a pipe")
	}
	if Raw(s) == nil || Raw(peer) == nil || Raw(a) != nil {
		t.Fatal("Raw: a socket for TCP conns, none for a pipe")
	}
	// Through TLS Socket finds the socket; Raw, which is for plain TCP only, does not.
	over := tls.Client(s, &tls.Config{InsecureSkipVerify: true})
	if Socket(over) == nil || Raw(over) != nil || Socket(a) != nil {
		t.Fatal("Socket: the socket under TLS, none under a pipe")
	}
}

// A read and a write allocate nothing.
func TestNoAllocs(t *testing.T) {
	s, peer := pair(t)
	go io.Copy(peer, peer)
	msg, buf := []byte("ping"), make([]byte, 4)
	allocs := testing.AllocsPerRun(200, func() {
		s.Write(msg)
		io.ReadFull(s, buf)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per write and read", allocs)
	}
}

// BenchmarkPingPong: a small write and its echo read, through Conn and
// through net's own methods on the same kind of pair.
func BenchmarkPingPong(b *testing.B) {
	for _, raw := range []bool{false, true} {
		name := "net"
		if raw {
			name = "sockio"
		}
		b.Run(name, func(b *testing.B) {
			s, peer := pair(b)
			go io.Copy(peer, peer)
			var c net.Conn = s.TCPConn
			if raw {
				c = s
			}
			msg, buf := make([]byte, 200), make([]byte, 200)
			b.ReportAllocs()
			for b.Loop() {
				c.Write(msg)
				io.ReadFull(c, buf)
			}
		})
	}
}

// Under reads and writes raw, and leaves every other method to the conn
// it wraps.
func TestUnder(t *testing.T) {
	s, peer := pair(t)
	outer := &closeCounter{Conn: s.TCPConn}
	u := Under(outer, s.TCPConn)
	if tc, ok := TCP(u); !ok || tc != s.TCPConn {
		t.Fatal("TCP of Under's conn is not the socket")
	}
	go peer.Write([]byte("hello"))
	buf := make([]byte, 5)
	if _, err := io.ReadFull(u, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("read %q, %v", buf, err)
	}
	if _, err := u.Write([]byte("back")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(peer, buf[:4]); err != nil || string(buf[:4]) != "back" {
		t.Fatalf("peer read %q, %v", buf[:4], err)
	}
	u.Close()
	if outer.closed != 1 {
		t.Fatalf("Under's Close reached the wrapper %d times, want once", outer.closed)
	}
}

type closeCounter struct {
	net.Conn
	closed int
}

func (c *closeCounter) Close() error { c.closed++; return c.Conn.Close() }

// TryWrite takes what fits and returns at once when the peer's buffers
// are full, with a short count and no error; the peer gets exactly the
// bytes counted.
func TestTryWriteNeverWaits(t *testing.T) {
	s, peer := pair(t)
	out := make([]byte, 1<<20)
	rand.Read(out)
	var sent bytes.Buffer
	done := make(chan error, 1)
	go func() { // nobody reads yet: the buffers fill
		for {
			n, err := s.TryWrite(out)
			sent.Write(out[:n])
			if err != nil || n < len(out) {
				done <- err
				return
			}
		}
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("TryWrite into full buffers: %v, want a short count", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("TryWrite waited for a peer that does not read")
	}
	if n, err := s.TryWrite(nil); n != 0 || err != nil {
		t.Fatalf("empty TryWrite: %d, %v", n, err)
	}
	s.CloseWrite()
	got, err := io.ReadAll(peer)
	if err != nil || !bytes.Equal(got, sent.Bytes()) {
		t.Fatalf("peer read %d bytes (%v), want the %d TryWrite counted", len(got), err, sent.Len())
	}
	s.Close()
	if _, err := s.TryWrite([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("TryWrite after Close: %v, want net.ErrClosed", err)
	}
}
