// Command clusterload feeds many distinct client addresses into a cluster
// of gatehouse nodes, for bench/cluster.sh: it measures whether the buckets
// and each node's memory stay bounded by blacklist.max_tracked, and how
// fast blocks spread from node to node while that load runs.
//
//	clusterload target -listen 127.0.0.1:28700
//	clusterload feed -nodes 127.0.0.2:28701,127.0.0.3:28701,127.0.0.4:28701 -n 1000000 -rate 5000
//
// target is the PBX behind the nodes: 200 "pbx" for every request.
//
// feed makes n connections, each from its own source address (127.16.0.0
// upwards: 127.16.0.0/12 holds 1,048,576), round-robin over the nodes, at
// most rate a second: each sends one request for a forbidden URL
// (/forbidden, answered 403 and counted as suspicious), so every address
// is tracked once. Every block-every'th address instead crosses the
// threshold on one node (threshold+1 forbidden requests) and is then
// probed on the next node with an allowed request until that node refuses
// it: the time from the block to the refusal is its propagation delay.
// One that its node refuses before it crossed the threshold (its node had
// blocked its whole range) made no block of its own and is not probed.
// Propagation is probed from a pool of its own, so a slow spread does not
// slow the feed. It prints progress every 10 s and a summary at the end.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	log.SetFlags(0)
	if len(os.Args) < 2 {
		log.Fatal("usage: clusterload target|feed [flags]")
	}
	switch os.Args[1] {
	case "target":
		fs := flag.NewFlagSet("target", flag.ExitOnError)
		listen := fs.String("listen", "127.0.0.1:28700", "address to answer on")
		fs.Parse(os.Args[2:])
		log.Fatal(http.ListenAndServe(*listen, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "pbx")
		})))
	case "feed":
		feed(os.Args[2:])
	default:
		log.Fatalf("unknown command %q", os.Args[1])
	}
}

type feeder struct {
	nodes     []string
	host      string
	threshold int

	sent, counted, refused, failed, blocked atomic.Int64
	mu                                      sync.Mutex
	delays                                  []time.Duration // propagation of each probed block
	unspread                                int             // blocks not refused elsewhere within the limit
	samples                                 []string        // a few of them
	notOwn                                  atomic.Int64    // served by its own node after crossing the threshold
	inRange                                 atomic.Int64    // refused by its node\'s range block before its own block
	notOwnSamples                           []string        // a few of the notOwn
	suspects                                []string        // the addresses of the samples, for cluster.sh to look up
}

func feed(args []string) {
	fs := flag.NewFlagSet("feed", flag.ExitOnError)
	nodes := fs.String("nodes", "", "comma-separated http listeners of the nodes")
	host := fs.String("host", "hq.example.com", "Host of the requests")
	n := fs.Int("n", 1000000, "distinct client addresses")
	rate := fs.Int("rate", 5000, "new addresses a second (0: as fast as the workers go)")
	workers := fs.Int("workers", 64, "concurrent connections")
	blockEvery := fs.Int("block-every", 100, "every this many addresses, one is blocked and its spread measured")
	threshold := fs.Int("threshold", 3, "blacklist.threshold of the nodes")
	fs.Parse(args)
	f := &feeder{nodes: strings.Split(*nodes, ","), host: *host, threshold: *threshold}
	if *nodes == "" || *n > 1<<20 {
		log.Fatal("feed: -nodes is required and -n at most 1048576")
	}
	jobs := make(chan int, *workers)
	probes := make(chan blockedAt, 1024)
	var wg, pg sync.WaitGroup
	for range *workers {
		wg.Go(func() {
			for i := range jobs {
				f.one(i, *blockEvery > 0 && i%*blockEvery == 0, probes)
			}
		})
	}
	for range 16 {
		pg.Go(func() {
			for b := range probes {
				f.probe(b)
			}
		})
	}
	start := time.Now()
	done := make(chan struct{})
	var rg sync.WaitGroup
	rg.Go(func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				el := time.Since(start).Seconds()
				fmt.Printf("progress %.0fs: %d addresses (%.0f/s), %d blocked, %d failed\n",
					el, f.sent.Load(), float64(f.sent.Load())/el, f.blocked.Load(), f.failed.Load())
			}
		}
	})
	for i := range *n {
		if *rate > 0 {
			if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(*rate))); d > 0 {
				time.Sleep(d)
			}
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	close(probes)
	pg.Wait()
	close(done)
	rg.Wait()
	el := time.Since(start)
	f.mu.Lock()
	defer f.mu.Unlock()
	slices.Sort(f.delays)
	pct := func(p float64) time.Duration {
		if len(f.delays) == 0 {
			return 0
		}
		return f.delays[min(len(f.delays)-1, int(p*float64(len(f.delays))))]
	}
	within := 0
	for _, d := range f.delays {
		if d <= time.Second {
			within++
		}
	}
	fmt.Printf("addresses %d in %v (%.0f/s), requests counted %d, refused %d, failed %d\n", f.sent.Load(), el.Round(time.Second),
		float64(f.sent.Load())/el.Seconds(), f.counted.Load(), f.refused.Load(), f.failed.Load())
	fmt.Printf("blocks %d (%.1f/s), spread to the next node: p50 %v p99 %v max %v, %d of %d within 1 s, %d not within 10 s\n",
		f.blocked.Load(), float64(f.blocked.Load())/el.Seconds(), pct(0.5).Round(time.Millisecond), pct(0.99).Round(time.Millisecond),
		pct(1).Round(time.Millisecond), within, len(f.delays), f.unspread)
	fmt.Printf("blocked addresses already refused by a range block of their node (not probed): %d\n", f.inRange.Load())
	if f.notOwn.Load() > 0 || len(f.samples) > 0 {
		fmt.Printf("not blocked by their own node: %d, e.g. %s; not spread, e.g. %s\n", f.notOwn.Load(),
			strings.Join(f.notOwnSamples, ", "), strings.Join(f.samples, ", "))
		fmt.Printf("suspects: %s\n", strings.Join(f.suspects, " "))
	}
}

// source is the i'th client address: 127.16.0.0 + i.
func source(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, byte(16 + i>>16), byte(i >> 8), byte(i)})
}

// get sends one request from src to node and returns the status code,
// 0 when the node closed the connection unanswered (a refusal).
func (f *feeder) get(src netip.Addr, node, path string) (int, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", node)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, f.host); err != nil {
		return 0, nil // closed at once: refused
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return 0, err
		}
		return 0, nil // closed unanswered: refused
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// blockedAt is an address blocked on its node, and when.
type blockedAt struct {
	i  int
	at time.Time
}

// one feeds address i; a blocked one goes to the probes.
func (f *feeder) one(i int, block bool, probes chan<- blockedAt) {
	src, node := source(i), f.nodes[i%len(f.nodes)]
	f.sent.Add(1)
	tries := 1
	if block {
		tries = f.threshold + 1
	}
	answered := 0
	for range tries {
		code, err := f.get(src, node, "/forbidden")
		switch {
		case err != nil:
			f.failed.Add(1)
			return
		case code == 403:
			f.counted.Add(1)
			answered++
		case code == 0:
			f.refused.Add(1) // its range was blocked as a whole (max_tracked reached)
		}
	}
	if block && answered < tries {
		// Refused before it crossed the threshold: its node had blocked
		// its range (a range it folded under max_tracked holds the block
		// of one of its clients; the nodes share that block too). No block
		// of its own to spread.
		f.inRange.Add(1)
		return
	}
	if block {
		// Its own node must refuse it now; otherwise there is nothing to spread.
		if code, err := f.get(src, node, "/PBX0/MY"); err != nil || code != 0 {
			f.notOwn.Add(1)
			f.mu.Lock()
			if len(f.notOwnSamples) < 5 {
				f.notOwnSamples = append(f.notOwnSamples, fmt.Sprintf("%v on %s (status %d, err %v, at %s)", src, node, code, err,
					time.Now().UTC().Format("15:04:05.000")))
				f.suspects = append(f.suspects, src.String())
			}
			f.mu.Unlock()
			return
		}
		f.blocked.Add(1)
		probes <- blockedAt{i, time.Now()}
	}
}

// probe waits until the node after the one that blocked b refuses it.
func (f *feeder) probe(b blockedAt) {
	src, next := source(b.i), f.nodes[(b.i+1)%len(f.nodes)]
	start := b.at
	for time.Since(start) < 10*time.Second {
		if code, err := f.get(src, next, "/PBX0/MY"); err == nil && code == 0 {
			f.mu.Lock()
			f.delays = append(f.delays, time.Since(start))
			f.mu.Unlock()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.mu.Lock()
	f.unspread++
	if len(f.samples) < 5 {
		f.samples = append(f.samples, fmt.Sprintf("%v on %s", src, next))
		f.suspects = append(f.suspects, src.String())
	}
	f.mu.Unlock()
}
