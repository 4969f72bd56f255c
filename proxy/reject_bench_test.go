package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/blacklist"
	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// BenchmarkBlockedRejection measures, in one run, how fast a blocked
// address hammering new connections is turned away (rejects/s) and how
// many new connections another address gets served meanwhile (served/s),
// through the real blacklist. Compare the two, not absolute figures: the
// loopback client, the proxy and the target share the machine.
func BenchmarkBlockedRejection(b *testing.B) {
	tg := newTarget(b, echoLines)

	bl, err := blacklist.New(configs.Blacklist{
		Blacklist: []configs.Prefix{{Prefix: netip.MustParsePrefix("127.0.0.66/32")}},
	}, blacklist.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer bl.Close()
	cfg, err := configs.Parse("bench.yaml", []byte(fmt.Sprintf(
		"listen:\n  sip: \"127.0.0.1:%d\"\nlimits: {max_conns_per_ip: 0}\n%s", freePort(b), svcYAML("pbx.example.com", tg.port(), ""))))
	if err != nil {
		b.Fatal(err)
	}
	srv, err := proxy.NewServer(cfg, proxy.Options{
		Handlers: map[string]proxy.Handler{"sip": proxy.Stream(&lineSniffer{})},
		Guard:    bl,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	addr := srv.Addr("sip").String()

	blocked := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.66")}}
	served := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.5")}}
	serveOne := func() error {
		c, err := served.Dial("tcp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		c.(*net.TCPConn).SetLinger(0) // no TIME_WAIT pile-up over a long run
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprint(c, "HELLO pbx.example.com\n")
		line, err := bufio.NewReader(c).ReadString('\n')
		if err == nil && !strings.HasPrefix(line, "echo:") {
			err = fmt.Errorf("served client got %q", line)
		}
		return err
	}
	if err := serveOne(); err != nil {
		b.Fatal(err)
	}

	var nServed atomic.Int64
	stop := make(chan struct{})
	var client sync.WaitGroup
	client.Add(1)
	go func() {
		defer client.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := serveOne(); err != nil {
				b.Error(err)
				return
			}
			nServed.Add(1)
		}
	}()

	buf := make([]byte, 16)
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		c, err := blocked.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		c.(*net.TCPConn).SetLinger(0)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(buf); err == nil {
			b.Fatalf("blocked client read %d bytes", n)
		}
		c.Close()
	}
	elapsed := time.Since(start)
	b.StopTimer()
	close(stop)
	client.Wait()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "rejects/s")
	b.ReportMetric(float64(nServed.Load())/elapsed.Seconds(), "served/s")
	if nServed.Load() == 0 && elapsed > time.Second {
		b.Error("the other address was not served while the blocked one hammered")
	}
}
