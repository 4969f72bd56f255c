package http

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
)

// TestReloadsLeaveNothingBehind reloads 200 times under load (HTTP/1.1
// keep-alive, and HTTP/2 clients that open a new connection for every
// request, so that connections arrive while generations are retired): no
// request may fail, and afterwards goroutines and memory are back within
// 10 % of what they were after the first reload.
func TestReloadsLeaveNothingBehind(t *testing.T) {
	if testing.Short() {
		t.Skip("200 reloads")
	}
	ca := testpki.NewCA(t, "test")
	pbx := newPBX(t, nil)
	g := startGate(t, ca, fmt.Sprintf(myPBX, pbx.port()), "")
	yaml := mustYAML(t, g)

	reload := func() {
		cfg, err := configs.Parse("test.yaml", yaml)
		if err != nil {
			t.Fatal(err)
		}
		if err := g.srv.Reload(cfg); err != nil {
			t.Fatal(err)
		}
	}
	var failures atomic.Int64
	var lastErr atomic.Value
	load := func(stop <-chan struct{}) *sync.WaitGroup {
		var wg sync.WaitGroup
		for i, h2 := range []bool{false, false, true, true} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := g.clientFrom(fmt.Sprintf("127.0.0.%d", 10+i), h2)
				defer c.CloseIdleConnections()
				url := "http://hq.example.com/PBX0/MY/x"
				if h2 {
					url = "https://hq.example.com/PBX0/MY/x"
				}
				for {
					select {
					case <-stop:
						return
					default:
					}
					resp, err := c.Get(url)
					if err == nil {
						resp.Body.Close()
						if resp.StatusCode != 200 {
							err = fmt.Errorf("status %d", resp.StatusCode)
						}
					}
					if err != nil {
						failures.Add(1)
						lastErr.Store(err.Error())
					}
					if h2 {
						c.CloseIdleConnections() // the next request comes on a new connection
					}
				}
			}()
		}
		return &wg
	}
	measure := func() (int, int64) {
		// Let closed connections' goroutines finish and memory return.
		time.Sleep(300 * time.Millisecond)
		runtime.GC()
		debug.FreeOSMemory()
		return runtime.NumGoroutine(), rss(t)
	}

	// The same load for as long before both measurements, so that the
	// heap the load itself needs is the same.
	const loadFor = 2 * time.Second
	stop := make(chan struct{})
	wg := load(stop)
	time.Sleep(loadFor / 2)
	reload()
	time.Sleep(loadFor / 2)
	close(stop)
	wg.Wait()
	g0, m0 := measure()

	stop = make(chan struct{})
	wg = load(stop)
	start := time.Now()
	for i := 0; i < 199; i++ {
		reload()
		time.Sleep(2 * time.Millisecond)
	}
	time.Sleep(loadFor - time.Since(start))
	close(stop)
	wg.Wait()
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d requests failed across the reloads; last: %v", n, lastErr.Load())
	}
	var g1 int
	var m1 int64
	for deadline := time.Now().Add(10 * time.Second); ; {
		g1, m1 = measure()
		if (float64(g1) <= 1.1*float64(g0) && float64(m1) <= 1.1*float64(m0)) || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("after the first reload: %d goroutines, RSS %d KiB; after 200: %d goroutines, RSS %d KiB", g0, m0>>10, g1, m1>>10)
	if float64(g1) > 1.1*float64(g0) {
		t.Errorf("goroutines grew from %d to %d over 200 reloads", g0, g1)
	}
	if float64(m1) > 1.1*float64(m0) {
		t.Errorf("RSS grew from %d KiB to %d KiB over 200 reloads", m0>>10, m1>>10)
	}
	h := g.h
	h.mu.Lock()
	n := len(h.gens)
	h.mu.Unlock()
	if n != 1 {
		t.Errorf("%d generations kept after the reloads, want 1", n)
	}
}

// rss is the process's resident set size.
func rss(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	for _, l := range bytes.Split(b, []byte("\n")) {
		if f := strings.Fields(string(l)); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Skip("no VmRSS")
	return 0
}
