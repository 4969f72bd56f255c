package proxy_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
	"github.com/gatehouse-pbx/gatehouse/proxy"
	"github.com/gatehouse-pbx/gatehouse/proxy/proxytest"
)

// lineSniffer is a minimal stream protocol for testing the listener layer:
// the first line is "HELLO <service> [identity]". Its watcher frames lines
// both ways: a client line "DENY" is answered "NO" and dropped, "BAD" is
// forwarded but suspicious; a target line "REJECT" is a target rejection.
type lineSniffer struct {
	calls atomic.Int64
	watch bool
}

func (s *lineSniffer) Sniff(first []byte, info *proxy.ConnInfo) (*proxy.Decision, error) {
	s.calls.Add(1)
	i := bytes.IndexByte(first, '\n')
	if i < 0 {
		return nil, proxy.ErrNeedMore
	}
	f := strings.Fields(string(first[:i]))
	if len(f) < 2 || f[0] != "HELLO" {
		return nil, proxy.Refuse(proxy.ReasonProtocol, "not a HELLO", nil)
	}
	d := &proxy.Decision{Service: f[1]}
	if len(f) > 2 {
		d.Identity = f[2]
	}
	if s.watch {
		d.Watcher = lineWatcher{}
	}
	return d, nil
}

func (s *lineSniffer) RefusalReply(first []byte, r *proxy.Refusal) []byte {
	return []byte("REFUSED " + r.Text() + "\n")
}

type lineWatcher struct{}

func (lineWatcher) Frame(dir proxy.Direction, buf []byte) (int, error) {
	i := bytes.IndexByte(buf, '\n')
	if i < 0 {
		return 0, proxy.ErrNeedMore
	}
	if i == 0 {
		return 0, fmt.Errorf("empty line")
	}
	return i + 1, nil
}

func (lineWatcher) Client(head []byte) proxy.Verdict {
	switch string(bytes.TrimSpace(head)) {
	case "DENY":
		return proxy.Verdict{Reply: []byte("NO\n"), Refusal: proxy.Refuse(proxy.ReasonURL, "denied line", nil)}
	case "BAD":
		return proxy.Verdict{Refusal: proxy.Refuse(proxy.ReasonUnreadable, "bad line", nil)}
	case "QUIT":
		return proxy.Verdict{Reply: []byte("BYE\n"), Close: true}
	}
	return proxy.Verdict{}
}

func (lineWatcher) Target(head []byte) (*proxy.Refusal, bool) {
	switch string(bytes.TrimSpace(head)) {
	case "REJECT":
		return proxy.Refuse(proxy.ReasonCredentials, "", nil), false
	case "SPOOF":
		return proxy.Refuse(proxy.ReasonTargetMessage, "spoof", nil), true
	}
	return nil, false
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int { return testpeer.FreePort(t) }

// target is a real TCP server that runs a per-connection script.
type target struct {
	ln    net.Listener
	wg    sync.WaitGroup
	serve func(c net.Conn)
}

func newTarget(t testing.TB, serve func(c net.Conn)) *target {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tg := &target{ln: ln, serve: serve}
	tg.wg.Add(1)
	go func() {
		defer tg.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tg.wg.Add(1)
			go func() {
				defer tg.wg.Done()
				defer c.Close()
				tg.serve(c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); tg.wg.Wait() })
	return tg
}

func (tg *target) port() int { return tg.ln.Addr().(*net.TCPAddr).Port }

// echoLines answers every line with "echo: <line>".
func echoLines(c net.Conn) {
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		fmt.Fprintf(c, "echo: %s", line)
	}
}

// startProxy runs a Server for yaml (a configuration without listen
// section: the test's "sip" listener is added on a free loopback port).
func startProxy(t *testing.T, yaml string, h proxy.Handler, g *proxytest.Guard) (*proxytest.Server, string) {
	t.Helper()
	yaml = fmt.Sprintf("listen:\n  sip: \"127.0.0.1:%d\"\n%s", freePort(t), yaml)
	srv := proxytest.NewServer(t, yaml, map[string]proxy.Handler{"sip": h}, g)
	return srv, srv.Addr("sip")
}
