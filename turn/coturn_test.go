package turn

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"github.com/gatehouse-pbx/gatehouse/blacklist"
	"github.com/gatehouse-pbx/gatehouse/configs"

	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
)

// End-to-end tests with coturn's own clients (Debian package coturn):
// turnutils_uclient allocates, binds channels and streams to
// turnutils_peer, which echoes; turnutils_stunclient sends bindings.

// coturnTool returns the path of a coturn client program.
func coturnTool(t *testing.T, name string) string {
	t.Helper()
	return testpeer.Program(t, name, "coturn")
}

// coturnPeer runs turnutils_peer on 127.0.0.1 and returns its port.
func coturnPeer(t *testing.T) int {
	t.Helper()
	bin := coturnTool(t, "turnutils_peer")
	port := freeUDPPort(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-L", "127.0.0.1", "-p", strconv.Itoa(port))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
	})
	// Wait until it has bound its port. Looked up in /proc/net/udp rather
	// than by binding the port to test it: a test bind in the moment the
	// peer binds would make the peer fail.
	want := fmt.Sprintf(" 0100007F:%04X ", port)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile("/proc/net/udp"); err == nil && strings.Contains(string(b), want) {
			return port
		}
	}
	t.Fatal("turnutils_peer did not start")
	return 0
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// uclientResult is what turnutils_uclient reports at the end of a run.
type uclientResult struct {
	ok               bool // exit status 0
	sent, recv, lost int
	out              string
}

var (
	reTotals = regexp.MustCompile(`tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\n`)
	reLost   = regexp.MustCompile(`Total lost packets (\d+)`)
)

// uclient runs turnutils_uclient against s: clients streams of messages
// of 120 bytes each, every 5ms, from local to the peer on 127.0.0.1.
// uclient rounds clients up to an even number.
func uclient(t *testing.T, s *Server, local string, peerPort, clients, messages int, user, pass string, flags ...string) uclientResult {
	t.Helper()
	bin := coturnTool(t, "turnutils_uclient")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := append(flags, "-L", local, "-e", "127.0.0.1", "-r", strconv.Itoa(peerPort),
		"-u", user, "-w", pass, "-m", strconv.Itoa(clients), "-n", strconv.Itoa(messages),
		"-l", "120", "-z", "5", "-p", strconv.Itoa(int(s.Addr().Port())), "127.0.0.1")
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("turnutils_uclient %v timed out:\n%s", args, out)
	}
	r := uclientResult{ok: err == nil, out: string(out)}
	if m := reTotals.FindSubmatch(out); m != nil {
		r.sent, _ = strconv.Atoi(string(m[1]))
		r.recv, _ = strconv.Atoi(string(m[2]))
	}
	if m := reLost.FindSubmatch(out); m != nil {
		r.lost, _ = strconv.Atoi(string(m[1]))
	} else {
		r.lost = -1
	}
	return r
}

func TestCoturnClientsRelay(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flags []string
	}{
		{"udp", nil},
		{"tcp", []string{"-t"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, baseConfig(), Options{})
			peer := coturnPeer(t)
			const clients, messages = 4, 50
			r := uclient(t, s, "127.0.0.1", peer, clients, messages, "phones", "pw", tc.flags...)
			if !r.ok || r.lost != 0 || r.sent != clients*messages || r.recv != r.sent {
				t.Fatalf("sent %d, received %d, lost %d (exit ok %v); want %d each way, none lost:\n%s",
					r.sent, r.recv, r.lost, r.ok, clients*messages, r.out)
			}
			// Each message crosses the relay twice, out and echoed back.
			if st := s.Stats(); st.Allocations < clients || st.RelayedPackets < 2*clients*messages || st.AuthFailures != 0 {
				t.Errorf("stats %+v: want %d allocations or more, %d relayed packets, no auth failures", st, clients, 2*clients*messages)
			}
		})
	}
}

func TestCoturnClientsRefused(t *testing.T) {
	peer := coturnPeer(t)

	t.Run("wrong password", func(t *testing.T) {
		s := startServer(t, baseConfig(), Options{})
		r := uclient(t, s, "127.0.0.1", peer, 2, 5, "phones", "wrong")
		if r.ok || r.recv != 0 {
			t.Fatalf("uclient with a wrong password: exit ok %v, received %d:\n%s", r.ok, r.recv, r.out)
		}
		if st := s.Stats(); st.AuthFailures == 0 || st.Allocations != 0 {
			t.Errorf("stats %+v: want auth failures and no allocation", st)
		}
	})

	t.Run("loopback peer by default", func(t *testing.T) {
		cfg := baseConfig()
		cfg.DenyPeers = nil
		s := startServer(t, cfg, Options{})
		r := uclient(t, s, "127.0.0.1", peer, 2, 5, "phones", "pw")
		if r.recv != 0 {
			t.Fatalf("media relayed to a loopback peer under the default deny list:\n%s", r.out)
		}
		if st := s.Stats(); st.DeniedPeers == 0 {
			t.Errorf("stats %+v: want denied peers", st)
		}
	})
}

// An address that keeps failing authentication is blocked by the real
// blacklist: from then on nothing it sends is answered, while other
// clients keep working.
func TestCoturnClientsBlockedAfterAuthFailures(t *testing.T) {
	stunclient := coturnTool(t, "turnutils_stunclient")
	bl, err := blacklist.New(configs.Blacklist{Threshold: 3, Expiration: time.Hour}, blacklist.Options{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bl.Close() })
	s := startServer(t, baseConfig(), Options{Guard: bl})
	peer := coturnPeer(t)
	attacker := netip.MustParseAddr("127.0.0.2")

	binding := func(local string) bool {
		// Unanswered, stunclient retransmits for long: a few seconds tell.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, stunclient, "-L", local, "-p", strconv.Itoa(int(s.Addr().Port())), "127.0.0.1").CombinedOutput()
		return err == nil && regexp.MustCompile(`reflexive addr: `+regexp.QuoteMeta(local)+`:\d+`).Match(out)
	}
	if !binding("127.0.0.2") {
		t.Fatal("turnutils_stunclient got no binding before any failure")
	}

	for i := 0; !bl.Blocked(attacker); i++ {
		if i == 5 {
			t.Fatalf("127.0.0.2 not blocked after %d failing runs (%d auth failures)", i, s.Stats().AuthFailures)
		}
		if r := uclient(t, s, "127.0.0.2", peer, 2, 5, "phones", "guess"+strconv.Itoa(i)); r.ok {
			t.Fatalf("uclient with a wrong password succeeded:\n%s", r.out)
		}
	}
	if binding("127.0.0.2") {
		t.Error("blocked address still answered")
	}
	blocked := s.Stats().Blocked
	raw := newRawClient(t, s, "127.0.0.2", "phones", "pw")
	if resp, err := raw.do(stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedUDP); err == nil {
		t.Errorf("blocked address got an answer to Allocate: %v", resp)
	}
	if s.Stats().Blocked == blocked {
		t.Error("datagrams from the blocked address not counted")
	}

	if !binding("127.0.0.1") {
		t.Error("another address got no binding")
	}
	r := uclient(t, s, "127.0.0.1", peer, 2, 20, "phones", "pw")
	if !r.ok || r.lost != 0 || r.recv != 40 {
		t.Errorf("another address: received %d of 40, lost %d:\n%s", r.recv, r.lost, r.out)
	}
}
