package turn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/pion/turn/v4"
	"golang.org/x/sys/unix"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/proxy/gate"
)

// Guard is the blacklist as the TURN server sees it, the gate's Guard;
// *blacklist.List implements it.
type Guard = gate.Guard

// Options are what New needs besides the configuration.
type Options struct {
	// Guard drops blocked sources and receives failed authentications;
	// nil blocks and reports nothing.
	Guard Guard
	// Logger receives the server's lines, rate-limited; nil means slog.Default().
	Logger *slog.Logger
	// Certificates are offered on turn.tls_listen, chosen by SNI.
	Certificates []tls.Certificate
	// Gate admits TCP and TLS connections: blocked clients, the per-client
	// and total connection caps shared with the other listeners, and
	// closing a client's connections when it is blocked. Nil makes one
	// around Guard with no caps.
	Gate *gate.Gate
	// UDPSockets is how many UDP sockets share turn.listen's address
	// (SO_REUSEPORT), each with its own read loop in pion; 0 means one
	// per GOMAXPROCS. The kernel sends a client's datagrams to one of
	// them by its address, so an allocation stays on one socket.
	UDPSockets int
}

// Server is a running STUN/TURN server.
type Server struct {
	cfg           settings
	guard         Guard
	gate          *gate.Gate
	log           *slog.Logger
	logs          *rateLog
	creds         *credentials // nil: STUN only
	limiter       *limiter
	lifetimeLimit time.Duration
	pion          *turn.Server
	addr, tlsAddr netip.AddrPort
	closing       chan struct{}
	handoff       *handoff // connections from listen.any (handoff.go)
	// sockets are the UDP sockets by socket (discovery.go): the primary
	// one, pion's, and with turn.alternate_address the three others;
	// addrs their addresses.
	sockets []net.PacketConn
	addrs   []netip.AddrPort
	// shards are the further sockets on the primary address (SO_REUSEPORT,
	// Options.UDPSockets), each also read by pion.
	shards []net.PacketConn
	stats  counters

	// wg counts what pion has been handed and must give back before Close
	// returns: its read and accept loops, stream conns and relay sockets.
	wg sync.WaitGroup

	mu      sync.Mutex // guards the fields below
	closed  bool
	conns   map[*streamConn]struct{}
	byAddr  map[string]*streamConn // conns by remote address, for the allocation events
	relays  map[*relayConn]struct{}
	pending int            // relay sockets being opened
	active  int            // allocations
	perUser map[string]int // allocations by quotaUser
}

// New validates cfg, fills its defaults, opens the listeners and starts
// serving. The caller owns the Server and must Close it.
func New(cfg configs.TURN, opts Options) (*Server, error) {
	local, err := localAddrs()
	if err != nil {
		return nil, err
	}
	st, err := newSettings(cfg, opts.Certificates, local)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	g := opts.Gate
	if g == nil {
		gopts := gate.Options{Logger: log}
		if opts.Guard != nil {
			gopts.Guard = opts.Guard
		}
		g = gate.New(gopts)
	}
	s := &Server{
		cfg:           st,
		guard:         opts.Guard,
		gate:          g,
		log:           log,
		logs:          newRateLog(log, time.Now),
		limiter:       newLimiter(requestRate, requestBurst, maxTracked, time.Now),
		lifetimeLimit: min(st.maxLifetime, maxGrantable),
		closing:       make(chan struct{}),
		conns:         make(map[*streamConn]struct{}),
		byAddr:        make(map[string]*streamConn),
		relays:        make(map[*relayConn]struct{}),
		perUser:       make(map[string]int),
	}
	if st.relay {
		s.creds = &credentials{realm: st.realm, accounts: st.accounts, now: time.Now}
		if st.secret != "" {
			s.creds.secret = []byte(st.secret)
		}
	}

	n := opts.UDPSockets
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	socks, shards, tcp, err := listenSockets(st.listen, st.alternate, n)
	if err != nil {
		return nil, fmt.Errorf("turn: listening on %s: %w", st.listen, err)
	}
	udp := socks[0]
	s.sockets = socks
	s.shards = shards
	for _, pc := range socks {
		a := pc.LocalAddr().(*net.UDPAddr).AddrPort()
		s.addrs = append(s.addrs, netip.AddrPortFrom(a.Addr().Unmap(), a.Port()))
	}
	closeAlternates := func() {
		for _, pc := range socks[1:] {
			pc.Close()
		}
		for _, pc := range shards {
			pc.Close()
		}
	}
	s.addr = tcp.Addr().(*net.TCPAddr).AddrPort()
	listeners := []*listener{{Listener: s.gateListener(tcp, "turn"), s: s}}
	if st.tlsListen != "" {
		tl, err := net.Listen("tcp", st.tlsListen)
		if err != nil {
			udp.Close()
			tcp.Close()
			closeAlternates()
			return nil, fmt.Errorf("turn: listening on %s: %w", st.tlsListen, err)
		}
		s.tlsAddr = tl.Addr().(*net.TCPAddr).AddrPort()
		listeners = append(listeners, &listener{Listener: s.gateListener(tl, "turns"), s: s, tls: st.tls})
	}

	s.handoff = newHandoff(tcp.Addr())
	listeners = append(listeners, &listener{Listener: s.handoff, s: s})

	r := &relays{s: s}
	if st.relay {
		r.gen = &turn.RelayAddressGeneratorPortRange{
			RelayAddress: st.relayIP.AsSlice(),
			Address:      st.relayBind,
			MinPort:      st.relayPorts.Min,
			MaxPort:      st.relayPorts.Max,
		}
	}
	pc := turn.ServerConfig{
		Realm:         st.realm,
		LoggerFactory: pionLogs{s.logs},
		QuotaHandler:  s.quota,
		EventHandler: turn.EventHandler{
			OnAuth:              s.onAuth,
			OnAllocationCreated: s.onAllocationCreated,
			OnAllocationDeleted: s.onAllocationDeleted,
			OnAllocationError:   s.onError,
		},
	}
	if s.creds != nil {
		pc.AuthHandler = s.authenticate
	}
	s.wg.Add(1 + len(shards) + len(listeners))
	for _, u := range append([]net.PacketConn{udp}, shards...) {
		c := newPacketConn(s, u)
		pc.PacketConnConfigs = append(pc.PacketConnConfigs, turn.PacketConnConfig{
			PacketConn:            c,
			RelayAddressGenerator: &relays{s: s, gen: r.gen, owner: c},
			PermissionHandler:     s.permit,
		})
	}
	for _, l := range listeners {
		l.done = sync.OnceFunc(s.wg.Done)
		pc.ListenerConfigs = append(pc.ListenerConfigs, turn.ListenerConfig{
			Listener:              l,
			RelayAddressGenerator: r,
			PermissionHandler:     s.permit,
		})
	}
	if s.pion, err = turn.NewServer(pc); err != nil {
		// pion validates before it starts anything.
		udp.Close()
		closeAlternates()
		for _, l := range listeners {
			l.Listener.Close()
		}
		return nil, fmt.Errorf("turn: %w", err)
	}
	for at := range socks[1:] {
		s.wg.Add(1)
		go s.serveAlternate(socket(at + 1))
	}
	mode := "STUN and TURN"
	if s.creds == nil {
		mode = "STUN only"
	}
	log.Info("turn: serving", "mode", mode, "listen", s.addr, "tls_listen", s.tlsAddr,
		"relay_address", st.relayIP, "relay_ports", fmt.Sprintf("%d-%d", st.relayPorts.Min, st.relayPorts.Max),
		"discovery_sockets", s.addrs, "udp_sockets", 1+len(shards))
	return s, nil
}

// listenPair opens UDP and TCP on the same address, n UDP sockets sharing
// it with SO_REUSEPORT when n > 1. Port 0 picks one port free for both,
// which tests rely on.
func listenPair(addr string, n int) ([]net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	for range 20 {
		tcp, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, nil, err
		}
		p := port
		if p == "0" {
			p = strconv.Itoa(tcp.Addr().(*net.TCPAddr).Port)
		}
		udp, err := listenShared(net.JoinHostPort(host, p), n)
		if err == nil {
			return udp, tcp, nil
		}
		tcp.Close()
		if port != "0" {
			return nil, nil, err
		}
	}
	return nil, nil, errors.New("no port free for both UDP and TCP")
}

// listenShared opens n UDP sockets on addr; more than one share it with
// SO_REUSEPORT (Linux lets only the same user join the group).
func listenShared(addr string, n int) ([]net.PacketConn, error) {
	if n <= 1 {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, err
		}
		return []net.PacketConn{pc}, nil
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	var socks []net.PacketConn
	for range n {
		pc, err := lc.ListenPacket(context.Background(), "udp", addr)
		if err != nil {
			for _, c := range socks {
				c.Close()
			}
			return nil, err
		}
		socks = append(socks, pc)
	}
	return socks, nil
}

// Addr is where STUN and TURN are served, over UDP and TCP.
func (s *Server) Addr() netip.AddrPort { return s.addr }

// TLSAddr is where TURN over TLS is served; invalid when it is not.
func (s *Server) TLSAddr() netip.AddrPort { return s.tlsAddr }

// Close stops the listeners, closes every client connection and relay
// socket, and returns once pion has given all of them back. It returns the
// errors of closing the listeners.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closing)
	s.mu.Unlock()

	err := s.pion.Close() // closes the primary UDP sockets and listeners
	for _, pc := range s.sockets[1:] {
		err = errors.Join(err, pc.Close()) // stops serveAlternate
	}
	// Stop pion's per-connection loops and relay handlers; each gives its
	// conn back through Close, which is what wg waits for.
	s.mu.Lock()
	for c := range s.conns {
		c.raw.Close()
	}
	for r := range s.relays {
		r.PacketConn.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// gateListener puts the gate in front of a TCP listener; blocked clients
// are counted as TURN rejections.
func (s *Server) gateListener(ln net.Listener, typ string) *gate.Listener {
	gl := s.gate.Listen(ln, gate.Service, typ)
	gl.OnAccept = func(_ netip.Addr, v gate.Verdict) {
		if v == gate.Blocked {
			s.stats.blocked.Add(1)
		}
	}
	return gl
}

func (s *Server) trackConn(c *streamConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	s.conns[c] = struct{}{}
	s.byAddr[c.raw.RemoteAddr().String()] = c
	return true
}

func (s *Server) untrackConn(c *streamConn) {
	s.mu.Lock()
	delete(s.conns, c)
	if k := c.raw.RemoteAddr().String(); s.byAddr[k] == c {
		delete(s.byAddr, k)
	}
	s.mu.Unlock()
	s.wg.Done()
}

// streamOf returns the stream connection an allocation event is about;
// nil for UDP.
func (s *Server) streamOf(src net.Addr) *streamConn {
	if _, ok := src.(*net.TCPAddr); !ok {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byAddr[src.String()]
}

// reserveRelay makes room for one relay socket under max_allocations.
func (s *Server) reserveRelay() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return errClosed
	case len(s.relays)+s.pending >= s.cfg.maxAllocs:
		s.stats.quotaRejections.Add(1)
		return errTotalQuota
	}
	s.pending++
	s.wg.Add(1)
	return nil
}

// trackRelay turns a reservation into an open relay socket.
func (s *Server) trackRelay(c *relayConn) error {
	s.mu.Lock()
	s.pending--
	s.relays[c] = struct{}{}
	closed := s.closed
	s.mu.Unlock()
	if closed {
		c.Close()
		return errClosed
	}
	return nil
}

// releaseRelay gives back a relay socket, or with nil a failed reservation.
func (s *Server) releaseRelay(c *relayConn) {
	s.mu.Lock()
	if c == nil {
		s.pending--
	} else {
		delete(s.relays, c)
	}
	s.mu.Unlock()
	s.wg.Done()
}
