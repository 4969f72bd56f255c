package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/proxy"
	"github.com/gatehouse-pbx/gatehouse/proxy/proxytest"
)

// TestNoGoroutineLeft drives good, refused, junk and abandoned connections
// through a server, shuts it down, and checks every goroutine it started
// has ended.
func TestNoGoroutineLeft(t *testing.T) {
	tg := newTarget(t, echoLines)
	before := runtime.NumGoroutine()

	port := freePort(t)
	cfg, err := configs.Parse("test.yaml", []byte(fmt.Sprintf(
		"listen: {sip: \"127.0.0.1:%d\"}\nlimits: {first_packet_timeout: 200ms}\n%s", port,
		svcYAML("pbx.example.com", tg.port(), ""))))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.NewServer(cfg, proxy.Options{Handlers: map[string]proxy.Handler{"sip": proxy.Stream(&lineSniffer{watch: true})},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr("sip").String()
	for i := 0; i < 20; i++ {
		c := proxytest.DialFrom(t, "127.0.0.2", addr)
		switch i % 4 {
		case 0: // served, then left open
			fmt.Fprint(c, "HELLO pbx.example.com\n")
			bufio.NewReader(c).ReadString('\n')
		case 1: // refused
			fmt.Fprint(c, "HELLO nobody.example.com\n")
		case 2: // junk
			fmt.Fprint(c, strings.Repeat("\x00\xff", 100))
		case 3: // says nothing
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	srv.Shutdown(ctx)

	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines before, %d after shutdown:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}
