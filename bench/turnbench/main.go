// Command turnbench measures how many datagrams per second a TURN server
// relays, so bench/turn.sh can compare gatehouse's turn package with
// coturn on the same machine, with the same client and packet size.
//
//	turnbench serve -listen 127.0.0.1:3479 -user u -password p [-udp-sockets n]
//	turnbench load -server 127.0.0.1:3479 -user u -password p -clients 8 -size 160 -duration 10s
//
// serve runs gatehouse's TURN server (loopback peers allowed) until
// SIGINT or SIGTERM. load allocates one relay per client with pion's TURN
// client, streams packets through it to an echo peer on 127.0.0.1 with a
// bounded number in flight, and prints one line: relayed datagrams per
// second (each echoed packet crosses the relay twice) and the loss.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pion/logging"
	pionturn "github.com/pion/turn/v4"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/turn"
)

const realm = "bench"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: turnbench serve|load [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "load":
		err = load(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "turnbench:", err)
		os.Exit(1)
	}
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:3479", "UDP and TCP address")
	user := fs.String("user", "bench", "account")
	password := fs.String("password", "bench", "password")
	sockets := fs.Int("udp-sockets", 0, "UDP sockets on the listen address (0: GOMAXPROCS)")
	fs.Parse(args)

	s, err := turn.New(configs.TURN{
		Listen:       *listen,
		Realm:        realm,
		RelayAddress: "127.0.0.1",
		Accounts:     []configs.Account{{User: *user, Password: *password}},
		// The echo peer is on loopback, which the default list denies.
		DenyPeers:      []configs.Prefix{{Prefix: netip.MustParsePrefix("169.254.0.0/16")}},
		MaxAllocations: 10000, MaxAllocationsPerUser: 10000,
	}, turn.Options{UDPSockets: *sockets, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	st := s.Stats()
	fmt.Fprintf(os.Stderr, "turnbench serve: relayed %d packets, %d bytes\n", st.RelayedPackets, st.RelayedBytes)
	return s.Close()
}

func load(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	server := fs.String("server", "127.0.0.1:3479", "TURN server (UDP)")
	user := fs.String("user", "bench", "account")
	password := fs.String("password", "bench", "password")
	clients := fs.Int("clients", 8, "allocations, one client each")
	size := fs.Int("size", 160, "payload bytes per packet (160: 20ms of G.711)")
	window := fs.Int("window", 32, "packets in flight per client")
	duration := fs.Duration("duration", 10*time.Second, "how long to measure")
	fs.Parse(args)

	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer peer.Close()
	wg.Go(func() { echo(peer) })

	relays := make([]net.PacketConn, 0, *clients)
	for range *clients {
		relay, closeClient, err := allocate(*server, *user, *password)
		if err != nil {
			return err
		}
		defer closeClient()
		relays = append(relays, relay)
	}

	var sent, received atomic.Uint64
	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	start := time.Now()
	var run sync.WaitGroup
	for _, relay := range relays {
		run.Go(func() { stream(ctx, relay, peer.LocalAddr(), *size, *window, &sent, &received) })
	}
	run.Wait()
	elapsed := time.Since(start).Seconds()
	s, r := sent.Load(), received.Load()
	fmt.Printf("relayed_pps=%.0f sent=%d received=%d loss=%.3f%% clients=%d size=%d seconds=%.1f\n",
		2*float64(r)/elapsed, s, r, 100*float64(s-r)/float64(max(s, 1)), *clients, *size, elapsed)
	return nil
}

type quiet struct{}

func (quiet) NewLogger(string) logging.LeveledLogger {
	return logging.NewDefaultLeveledLoggerForScope("", logging.LogLevelDisabled, nil)
}

// allocate returns a relay through server, primed with a permission and a
// channel by one echoed packet.
func allocate(server, user, password string) (net.PacketConn, func(), error) {
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	client, err := pionturn.NewClient(&pionturn.ClientConfig{
		STUNServerAddr: server, TURNServerAddr: server, Conn: conn,
		Username: user, Password: password, Realm: realm, LoggerFactory: quiet{},
	})
	if err == nil {
		err = client.Listen()
	}
	var relay net.PacketConn
	if err == nil {
		relay, err = client.Allocate()
	}
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("allocating on %s: %w", server, err)
	}
	return relay, func() { relay.Close(); client.Close(); conn.Close() }, nil
}

func echo(c *net.UDPConn) {
	buf := make([]byte, 2048)
	for {
		n, from, err := c.ReadFromUDP(buf)
		if err != nil {
			return
		}
		c.WriteToUDP(buf[:n], from)
	}
}

// stream keeps window packets in flight through relay until ctx ends. A
// window not answered within a second is counted lost and reopened.
func stream(ctx context.Context, relay net.PacketConn, peer net.Addr, size, window int, sent, received *atomic.Uint64) {
	slots := make(chan struct{}, window)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		buf := make([]byte, 2048)
		for ctx.Err() == nil {
			relay.SetReadDeadline(time.Now().Add(time.Second))
			_, _, err := relay.ReadFrom(buf)
			var ne net.Error
			switch {
			case err == nil:
				received.Add(1)
				select {
				case <-slots:
				default:
				}
			case errors.As(err, &ne) && ne.Timeout():
				for len(slots) > 0 {
					<-slots
				}
			default:
				return
			}
		}
	})
	payload := make([]byte, size)
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			relay.SetReadDeadline(time.Now()) // stop the reader
			return
		}
		if _, err := relay.WriteTo(payload, peer); err != nil {
			relay.SetReadDeadline(time.Now())
			return
		}
		sent.Add(1)
	}
}
