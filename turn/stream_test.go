package turn

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// dialTCP opens a plain TCP connection to s from local.
func dialTCP(t *testing.T, s *Server, local string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	c, err := d.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestAllocateTimeout: a TURN/TCP connection that holds no allocation is
// closed turn.allocate_timeout after it was accepted, however busy it keeps
// with Binding requests; one that allocated stays and relays.
func TestAllocateTimeout(t *testing.T) {
	cfg := baseConfig()
	cfg.AllocateTimeout = 300 * time.Millisecond
	s := startServer(t, cfg, Options{})
	peer := echoPeer(t)

	bare := dialTCP(t, s, "127.0.0.2")
	sent := 0
	closed := make(chan error, 1)
	go func() {
		buf := make([]byte, 2048)
		for {
			bare.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := bare.Read(buf); err != nil {
				closed <- err
				return
			}
		}
	}()
	start := time.Now()
	ticker := time.NewTicker(50 * time.Millisecond)
	defer ticker.Stop()
	giveUp := time.After(5 * time.Second)
wait:
	for {
		select {
		case <-giveUp:
			t.Fatalf("a bare connection was still open after 5s (allocate_timeout %v)", cfg.AllocateTimeout)
		case <-closed:
			break wait
		case <-ticker.C:
			if _, err := bare.Write(stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint).Raw); err == nil {
				sent++
			}
		}
	}
	// The server times from its accept, the test from its dial's return:
	// allow for the few milliseconds between the two.
	if held := time.Since(start); held < cfg.AllocateTimeout-50*time.Millisecond {
		t.Errorf("bare connection closed after %v, before allocate_timeout %v", held, cfg.AllocateTimeout)
	}
	if sent == 0 {
		t.Error("the bare connection sent nothing before it was closed")
	}

	client := dialClient(t, s, "tcp", "127.0.0.3", "phones", "pw")
	relay, err := client.Allocate()
	if err != nil {
		t.Fatalf("Allocate over TCP: %v", err)
	}
	defer relay.Close()
	time.Sleep(3 * cfg.AllocateTimeout)
	roundTrips(t, relay, peer, 3) // the control connection is still there
}

// TestIndicationRateOnTCP: on a stream, STUN indications count towards
// the per-client request rate (an indication costs a read that keeps the
// connection busy); on UDP they do not.
func TestIndicationRateOnTCP(t *testing.T) {
	s := startServer(t, baseConfig(), Options{})
	indication := func() []byte {
		return stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodBinding, stun.ClassIndication), stun.Fingerprint).Raw
	}
	const n = 1000 // five times the burst of requestBurst

	// UDP first: n indications, in batches the socket buffer holds, each
	// followed by a request that is still answered.
	udp := newRawClient(t, s, "127.0.0.4", "", "")
	for i := range n / 100 {
		for range 100 {
			udp.send(indication())
		}
		if _, err := udp.do(stun.BindingRequest, stun.Fingerprint); err != nil {
			t.Fatalf("UDP binding after %d indications: %v (%+v)", 100*(i+1), err, s.Stats())
		}
	}
	if th := s.Stats().Throttled; th != 0 {
		t.Fatalf("UDP indications throttled: %d", th)
	}

	// The same over one TCP connection, in one write: all but the burst
	// (and what refills meanwhile, 50 a second) are dropped.
	var all bytes.Buffer
	for range n {
		all.Write(indication())
	}
	c := dialTCP(t, s, "127.0.0.5")
	if _, err := c.Write(all.Bytes()); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); s.Stats().Throttled < n/2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("TCP indications throttled: %d of %d, want most", s.Stats().Throttled, n)
		}
	}
}
