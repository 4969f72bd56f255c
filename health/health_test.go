package health_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/health"
	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
)

// syncBuf is a log the checker writes while the test reads.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func config(t *testing.T, yaml string) *configs.Config {
	t.Helper()
	cfg, err := configs.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// waitState polls until addr's state is want.
func waitState(t *testing.T, c *health.Checker, addr, want string) health.Target {
	t.Helper()
	var last health.Target
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, tg := range c.Targets() {
			if tg.Addr == addr {
				last = tg
				if tg.State == want {
					return tg
				}
			}
		}
	}
	t.Fatalf("%s never %s: %+v", addr, want, last)
	return last
}

// accept serves a TCP listener by closing what it accepts.
func accept(ln net.Listener) (done chan struct{}) {
	done = make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return done
}

// TestTargetGoesDownAndUp follows an H.323 target port (checked by TCP
// connect) as it stops and starts again: down after health.fall failed
// checks, up after health.rise good ones, each change logged once.
func TestTargetGoesDownAndUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := accept(ln)
	addr := ln.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	cfg := config(t, fmt.Sprintf(`services:
  - {name: pbx.example.com, target: 127.0.0.1, ports: {h323: %s}}
  - {name: branch.example.com, target: 127.0.0.1, ports: {h323: %s}}
health: {interval: 50ms, timeout: 50ms, fall: 2, rise: 2}
`, port, port))
	var log syncBuf
	c := health.New(cfg, health.Options{Logger: slog.New(slog.NewTextHandler(&log, nil))})
	defer c.Close()

	tg := waitState(t, c, addr, "up")
	if tg.Type != "h323" || strings.Join(tg.Services, ",") != "pbx.example.com,branch.example.com" || tg.Check != "tcp connect" {
		t.Errorf("target %+v", tg)
	}
	if c.Down(addr) {
		t.Error("Down while up")
	}
	ln.Close()
	<-done
	tg = waitState(t, c, addr, "down")
	if !c.Down(addr) || !strings.Contains(tg.LastError, "tcp connect") {
		t.Errorf("down target %+v, Down %v", tg, c.Down(addr))
	}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	done = accept(ln)
	defer func() { ln.Close(); <-done }()
	waitState(t, c, addr, "up")
	out := log.String()
	if strings.Count(out, "target down") != 1 || strings.Count(out, "target up") != 2 || !strings.Contains(out, "target="+addr) {
		t.Errorf("log:\n%s", out)
	}
}

// TestDialFailuresMarkDown: the proxy's failed dials count like failed
// checks, so a target is known down as soon as phones fail to reach it,
// before the next check.
func TestDialFailuresMarkDown(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testpeer.FreePort(t))
	_, port, _ := net.SplitHostPort(addr)
	cfg := config(t, fmt.Sprintf(`services:
  - {name: pbx.example.com, target: 127.0.0.1, ports: {sip: %s}}
health: {interval: 1h, fall: 3}
`, port))
	c := health.New(cfg, health.Options{Logger: slog.New(slog.DiscardHandler)})
	defer c.Close()
	waitState(t, c, addr, "unknown") // the first check fails once: not yet down
	down := false
	for i := 0; i < 3 && !down; i++ {
		down = c.Observe(addr, fmt.Errorf("connection refused"))
	}
	if !down || !c.Down(addr) {
		t.Fatal("three failures in a row did not mark the target down")
	}
	if c.Observe("127.0.0.1:1", fmt.Errorf("x")) {
		t.Error("an address that is no target is down")
	}
	// A reload that keeps the target keeps its state; one that drops it forgets it.
	c.Reload(cfg)
	if !c.Down(addr) {
		t.Error("reload forgot the state")
	}
	c.Reload(config(t, "services: []\n"))
	if c.Down(addr) || len(c.Targets()) != 0 {
		t.Error("a target no longer configured is still known")
	}
}

// TestProbeHTTPWithNginx checks the HTTP check against nginx: a page is
// up, a 404 is up (the server runs), a 503 is down, a closed port is down.
func TestProbeHTTPWithNginx(t *testing.T) {
	port := fmt.Sprint(testpeer.FreePort(t))
	testpeer.Nginx(t, `
	access_log off;
	server {
		listen 127.0.0.1:`+port+`;
		location = / { return 200 "ok"; }
		location = /maintenance { return 503; }
		location / { return 404; }
	}`)
	addr := "127.0.0.1:" + port
	testpeer.WaitListening(t, addr)

	typ, _ := configs.LookupType("http")
	for _, tc := range []struct {
		addr, path string
		up         bool
	}{
		{addr, "/", true},
		{addr, "/missing", true},
		{addr, "/maintenance", false},
		{fmt.Sprintf("127.0.0.1:%d", testpeer.FreePort(t)), "/", false},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := health.Probe(ctx, health.Spec{Addr: tc.addr, Type: typ, Host: "hq.example.com", HTTPath: tc.path})
		cancel()
		if (err == nil) != tc.up {
			t.Errorf("GET %s on %s: %v, want up=%v", tc.path, tc.addr, err, tc.up) // testpeer.Nginx logs its output
		}
	}
}
