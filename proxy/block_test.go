package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/blacklist"
	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/proxy/gate"
)

// lines frames messages by line and lets every one through: the relay's
// own check of a blocked client is what is tested.
type lines struct{}

func (lines) Frame(dir Direction, buf []byte) (int, error) {
	if i := bytes.IndexByte(buf, '\n'); i >= 0 {
		return i + 1, nil
	}
	return 0, ErrNeedMore
}
func (lines) Client([]byte) Verdict          { return Verdict{} }
func (lines) Target([]byte) (*Refusal, bool) { return nil, false }

// linuxConn is a client conn whose CloseRead succeeds but, as on Linux
// after shutdown(SHUT_RD), still hands over what the peer sends next.
type linuxConn struct{ net.Conn }

func (linuxConn) CloseRead() error { return nil }

// TestNothingFromABlockedClientReachesTheTarget: a client blocked in the
// middle of a relayed session goes on sending; the relay forwards none of
// it, whether or not the kernel still delivers it.
func TestNothingFromABlockedClientReachesTheTarget(t *testing.T) {
	bl, err := blacklist.New(configs.Blacklist{Threshold: 1, Expiration: time.Hour, MaxTracked: 100},
		blacklist.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	g := gate.New(gate.Options{Guard: bl, Key: bl.Key, Logger: slog.New(slog.DiscardHandler)})
	bl.OnBlock(g.Block)
	cfg, err := configs.Parse("test.yaml", []byte("listen:\n  sip: \"127.0.0.1:5060\"\n"+
		"services:\n  - name: pbx.example.com\n    target: 127.0.0.1\n    ports: {sip: 5060}\n"))
	if err != nil {
		t.Fatal(err)
	}

	client, clientPeer := net.Pipe()
	target, targetPeer := net.Pipe()
	defer clientPeer.Close()
	defer targetPeer.Close()
	ip := netip.MustParseAddr("192.0.2.7")
	gc, v := g.Admit(linuxConn{client}, ip, gate.Service, "sip")
	if v != gate.Admitted {
		t.Fatal(v)
	}
	c := &Conn{Conn: client, raw: client, gate: gc, Table: NewTable(cfg, nil)}
	r := &relay{conn: c, target: target, watcher: lines{}, service: "pbx.example.com"}
	done := make(chan struct{})
	go func() { defer close(done); r.run(nil) }()

	fromClient := bufio.NewReader(targetPeer)
	fmt.Fprint(clientPeer, "BEFORE\n")
	if line, err := fromClient.ReadString('\n'); err != nil || line != "BEFORE\n" {
		t.Fatalf("before the block: %q, %v", line, err)
	}
	if err := bl.AddManual(netip.PrefixFrom(ip, 32), "test"); err != nil {
		t.Fatal(err)
	}
	if !gc.Blocked() {
		t.Fatal("the gate did not cut the connection")
	}
	clientPeer.SetWriteDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprint(clientPeer, "AFTER\n")
	targetPeer.SetReadDeadline(time.Now().Add(2 * time.Second))
	if line, err := fromClient.ReadString('\n'); err == nil {
		t.Fatalf("after the block the target got %q", line)
	}
	<-done // the relay ended, and closed both sides
}
