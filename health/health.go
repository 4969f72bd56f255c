// Package health knows which service targets are up. It checks every
// target port of the configuration actively (a TCP connect, TLS on TLS
// ports, and the protocol's cheap question where there is one: an HTTP
// GET, a SIP OPTIONS, an LDAP root DSE search) and hears the proxy's dial
// results passively. The proxy asks it before dialing (proxy.Health): a
// target that is down is refused at once with the protocol's "unavailable"
// answer, and its dial failures are not the client's fault.
//
// A target starts Unknown (treated as up), goes Down after health.fall
// failures in a row (checks and dials alike) and Up again after
// health.rise successful checks in a row. Every change is logged.
package health

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
)

// State is what gatehouse knows of a target.
type State uint8

const (
	// Unknown: not checked yet; dials go ahead.
	Unknown State = iota
	Up
	Down
)

func (s State) String() string {
	switch s {
	case Up:
		return "up"
	case Down:
		return "down"
	}
	return "unknown"
}

// Target is one target port as the admin UI shows it.
type Target struct {
	Addr      string    `json:"addr"`     // host:port
	Type      string    `json:"type"`     // the service type of the port ("sips")
	Services  []string  `json:"services"` // the services that use it
	Check     string    `json:"check"`    // what the active check does
	State     string    `json:"state"`    // up, down or unknown
	Since     time.Time `json:"since"`    // when State began (zero while unknown)
	LastCheck time.Time `json:"last_check"`
	LastError string    `json:"last_error,omitempty"` // the latest failure, checks and dials alike
}

// Options are the parts of a Checker that are not configuration.
type Options struct {
	// Logger gets a line at every change of state; nil is slog.Default().
	Logger *slog.Logger
	// Probe replaces the active check (tests of the state machine); nil
	// is the real check of the target's protocol.
	Probe func(ctx context.Context, t Spec) error
}

// Spec is what an active check needs to know of a target.
type Spec struct {
	Addr    string
	Type    configs.ServiceType
	Host    string      // the service's name: HTTP Host, SIP request URI
	TLS     *tls.Config // non-nil on TLS ports
	HTTPath string      // health.http_path
}

// Checker runs the active checks and keeps every target's state. Its
// methods are safe for concurrent use.
type Checker struct {
	log   *slog.Logger
	probe func(ctx context.Context, t Spec) error

	mu      sync.Mutex // guards the fields below
	cfg     configs.Health
	targets map[string]*target // by address
	closed  bool

	reload chan struct{}      // wakes the loop for a new configuration
	ctx    context.Context    // ends with Close: the loop and the checks under way
	stop   context.CancelFunc // ends ctx
	wg     sync.WaitGroup     // the loop and the checks of a round
}

type target struct {
	spec     Spec
	services []string
	state    State
	since    time.Time
	fails    int // failures in a row
	oks      int // successful checks in a row
	lastErr  string
	checked  time.Time
}

// New starts checking cfg's targets; Close stops it.
func New(cfg *configs.Config, opts Options) *Checker {
	c := &Checker{
		log:     opts.Logger,
		probe:   opts.Probe,
		targets: map[string]*target{},
		reload:  make(chan struct{}, 1),
	}
	c.ctx, c.stop = context.WithCancel(context.Background())
	if c.log == nil {
		c.log = slog.Default()
	}
	if c.probe == nil {
		c.probe = Probe
	}
	c.Reload(cfg)
	c.wg.Add(1)
	go c.loop()
	return c
}

// Reload switches to cfg's targets and settings. A target that stays keeps
// its state; one that is no longer configured is forgotten.
func (c *Checker) Reload(cfg *configs.Config) {
	next := map[string]*target{}
	for i := range cfg.Services {
		s := &cfg.Services[i]
		for _, st := range configs.ServiceTypes {
			port, ok := s.Port(st.Name)
			if !ok {
				continue
			}
			addr := net.JoinHostPort(s.Target, strconv.Itoa(port))
			if t := next[addr]; t != nil {
				t.services = append(t.services, s.Name)
				continue
			}
			spec := Spec{Addr: addr, Type: st, Host: s.Name, HTTPath: cfg.Health.HTTPPath}
			if st.TLS {
				spec.TLS = &tls.Config{RootCAs: cfg.TLS.TargetCAPool, MinVersion: tls.VersionTLS12, ServerName: s.Target}
			}
			next[addr] = &target{spec: spec, services: []string{s.Name}}
		}
	}
	c.mu.Lock()
	for addr, t := range next {
		if old := c.targets[addr]; old != nil && old.spec.Type == t.spec.Type {
			t.state, t.since, t.fails, t.oks, t.lastErr, t.checked = old.state, old.since, old.fails, old.oks, old.lastErr, old.checked
		}
	}
	c.targets, c.cfg = next, cfg.Health
	c.mu.Unlock()
	select {
	case c.reload <- struct{}{}:
	default:
	}
}

// Close stops the checks and waits for them.
func (c *Checker) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	c.stop()
	c.wg.Wait()
}

// Down reports whether the target at addr is known to be down.
func (c *Checker) Down(addr string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.targets[addr]
	return t != nil && t.state == Down
}

// Observe records the result of a dial to addr (err nil: connected) and
// reports whether the target is down after it. A success resets the
// failures; it does not bring a down target up (no dial is made to one).
func (c *Checker) Observe(addr string, err error) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.targets[addr]
	if t == nil {
		return false
	}
	if err == nil {
		t.fails = 0
		return t.state == Down
	}
	c.failed(t, "dial: "+err.Error())
	return t.state == Down
}

// Targets lists every target, by address.
func (c *Checker) Targets() []Target {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Target, 0, len(c.targets))
	for _, t := range c.targets {
		out = append(out, Target{
			Addr: t.spec.Addr, Type: t.spec.Type.Name, Services: slices.Clone(t.services),
			Check: checkName(t.spec), State: t.state.String(), Since: t.since,
			LastCheck: t.checked, LastError: t.lastErr,
		})
	}
	slices.SortFunc(out, func(a, b Target) int {
		if a.Addr < b.Addr {
			return -1
		}
		if a.Addr > b.Addr {
			return 1
		}
		return 0
	})
	return out
}

// failed counts a failure of t; c.mu is held.
func (c *Checker) failed(t *target, msg string) {
	t.oks = 0
	t.fails++
	t.lastErr = msg
	if t.state != Down && t.fails >= c.cfg.Fall {
		c.change(t, Down)
	}
}

// change sets t's state and logs it; c.mu is held.
func (c *Checker) change(t *target, s State) {
	t.state, t.since = s, time.Now()
	attrs := []any{"target", t.spec.Addr, "type", t.spec.Type.Name, "services", t.services}
	if s == Down {
		c.log.Warn("target down", append(attrs, "err", t.lastErr)...)
	} else {
		c.log.Info("target up", attrs...)
	}
}

// loop runs a round of checks every health.interval until Close.
func (c *Checker) loop() {
	defer c.wg.Done()
	timer := time.NewTimer(0) // the first round at once
	defer timer.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.reload:
			timer.Reset(0)
		case <-timer.C:
			c.round()
			c.mu.Lock()
			interval := c.cfg.Interval
			c.mu.Unlock()
			timer.Reset(interval)
		}
	}
}

// round checks every target at once and waits for the checks.
func (c *Checker) round() {
	c.mu.Lock()
	specs := make([]Spec, 0, len(c.targets))
	for _, t := range c.targets {
		specs = append(specs, t.spec)
	}
	timeout := c.cfg.Timeout
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(c.ctx, timeout) // Close ends a round under way
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range specs {
		wg.Go(func() {
			err := c.probe(ctx, s)
			c.record(s, err)
		})
	}
	wg.Wait()
}

// record applies one check's result.
func (c *Checker) record(s Spec, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.targets[s.Addr]
	if t == nil || t.spec.Type != s.Type || c.closed {
		return // reloaded away meanwhile
	}
	t.checked = time.Now()
	if err != nil {
		c.failed(t, checkName(s)+": "+err.Error())
		return
	}
	t.fails = 0
	t.oks++
	if t.state == Unknown || (t.state == Down && t.oks >= c.cfg.Rise) {
		c.change(t, Up)
	}
}
