package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/gatehouse-pbx/gatehouse/blacklist"
	"github.com/gatehouse-pbx/gatehouse/cluster"
	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/health"
	"github.com/gatehouse-pbx/gatehouse/proxy"
	"github.com/gatehouse-pbx/gatehouse/proxy/acme"
	"github.com/gatehouse-pbx/gatehouse/proxy/gate"
	"github.com/gatehouse-pbx/gatehouse/tunnel"
	"github.com/gatehouse-pbx/gatehouse/turn"
	"github.com/gatehouse-pbx/gatehouse/webui"
)

// app is a running gatehouse: the parts serve wires together, and the one
// reload path that SIGHUP, the admin UI and the admin API all use.
type app struct {
	path   string
	log    *slog.Logger
	level  *slog.LevelVar
	bl     *blacklist.List
	node   *cluster.Node // nil without a cluster section
	events *gate.EventLog
	health *health.Checker
	srv    *proxy.Server
	agents *tunnel.Server
	shared *cluster.Agents             // the agents of every node; nil without a cluster section
	relay  atomic.Pointer[turn.Server] // nil when TURN is off; read by the admin UI
	acme   *acme.Manager               // nil without tls.acme
	bg     sync.WaitGroup              // admin listeners being stopped; serve waits for them

	mu    sync.Mutex // one reload at a time; guards the fields below
	cfg   *configs.Config
	admin *webui.Server
}

// serve runs gatehouse until ctx is cancelled (SIGTERM, SIGINT), reloading
// the configuration on SIGHUP.
func serve(ctx context.Context, path string, logw io.Writer) error {
	// Taken before anything listens: a SIGHUP's default action ends the
	// process, and one sent as soon as the ports answer (a reload right
	// after a start) would. One that comes during the start is a reload
	// once the start is done.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cfg, err := configs.Load(path)
	if err != nil {
		return err
	}
	var level slog.LevelVar
	log := newLogger(cfg.Log, &level, logw)
	slog.SetDefault(log)

	if cfg.Cluster.Enabled && cfg.Blacklist.State != "" {
		log.Info("cluster: blacklist.state is not used; the cluster's buckets hold the state", "state", cfg.Blacklist.State)
	}
	bl, err := blacklist.New(blacklistConfig(cfg), blacklist.Options{Logger: log})
	if err != nil {
		return err
	}
	bl.Start()
	defer bl.Close()
	var node *cluster.Node
	if cfg.Cluster.Enabled {
		// Before any listener: the node catches up in the background,
		// and what this node blocks meanwhile is queued for the others.
		if node, err = cluster.Start(cfg.Cluster, bl, cluster.Options{Logger: log, Version: version, MaxTracked: cfg.Blacklist.MaxTracked}); err != nil {
			return err
		}
		defer node.Close() // before bl.Close: writes what is still queued
	}
	var a *app
	defer func() { a.bg.Wait() }()
	a = &app{path: path, log: log, level: &level, bl: bl, node: node, cfg: cfg,
		// Every part reports through the event log, so the admin UI shows
		// refusals of the service ports, TURN and the admin listener alike.
		events: gate.NewEventLog(bl, gate.DefaultEventLogSize)}

	// One gate for every listener: the per-client and total connection
	// caps count across services, TURN and the admin port, and a block
	// closes what the client has open on any of them.
	gt := gate.New(gate.Options{Guard: a.events, Key: bl.Key, Range: bl.Range, Whitelisted: bl.Whitelisted, Logger: log})
	bl.OnBlock(gt.Block)
	logDescriptorLimits(log, cfg)
	// Agents dial in before any service routes to them; the tunnels close
	// after the proxy has drained (defers run last first).
	topts := tunnel.Options{Logger: log, Gate: gt, Guard: a.events}
	var agents proxy.Agents
	if node != nil {
		// In a cluster the tunnels are registered for the other nodes,
		// and a name served by another node's tunnel is forwarded there.
		a.shared = cluster.NewAgents(node)
		topts.Changed = a.shared.Changed
	}
	a.agents, err = tunnel.New(cfg, topts)
	if err != nil {
		return err
	}
	defer a.agents.Close()
	agents = a.agents
	if a.shared != nil {
		if err := a.shared.Start(cfg, a.agents); err != nil {
			return err
		}
		defer a.shared.Close() // before the tunnels and the node: deletes the registrations
		agents = a.shared
	}
	if a.acme, err = startACME(cfg, node, log); err != nil {
		return err
	}
	if a.acme != nil {
		defer a.acme.Close()
	}
	// The targets' health: the proxy asks it before dialing, so a PBX that
	// restarts is answered "unavailable" and its phones are not blamed.
	a.health = health.New(cfg, health.Options{Logger: log})
	defer a.health.Close()
	popts := proxy.Options{
		Handlers: a.handlers(),
		Guard:    a.events,
		Logger:   log,
		Gate:     gt,
		Agents:   agents,
		Health:   a.health,
	}
	if a.acme != nil {
		popts.Certificates = a.acme
	}
	a.srv, err = proxy.NewServer(cfg, popts)
	if err != nil {
		return err
	}
	relay, err := startTURN(cfg, a.events, gt, log)
	if err != nil {
		a.srv.Close()
		return err
	}
	a.relay.Store(relay)
	defer func() {
		if r := a.relay.Load(); r != nil {
			r.Close()
		}
	}()
	if cfg.Admin.Listen != "" {
		if a.admin, err = a.startAdmin(cfg); err != nil {
			a.srv.Close()
			return err
		}
	}
	log.Info("gatehouse started", "version", version, "config", path, "services", len(cfg.Services))

	for {
		select {
		case <-hup:
			next, err := configs.Load(path)
			if err != nil {
				logConfigErrors(log, err)
				log.Error("reload failed: keeping the running configuration", "config", path)
				continue
			}
			if err := a.reload(next); err != nil {
				log.Error("reload failed: keeping the running configuration", "config", path, "err", err)
			}
		case <-ctx.Done():
			a.mu.Lock()
			cfg, admin := a.cfg, a.admin
			a.mu.Unlock()
			log.Info("shutting down", "grace", cfg.Limits.ShutdownTimeout)
			sctx, cancel := context.WithTimeout(context.Background(), cfg.Limits.ShutdownTimeout)
			defer cancel()
			if admin != nil {
				admin.Shutdown(sctx)
			}
			if err := a.srv.Shutdown(sctx); err != nil {
				log.Warn("shutdown grace period over: connections closed", "err", err)
			}
			log.Info("stopped")
			return nil
		}
	}
}

// reload switches every part to next, a validated configuration. New
// connections use it; established ones keep the configuration they were
// accepted under. When the proxy cannot take it (a port in use) nothing
// changes and the error says why.
func (a *app) reload(next *configs.Config) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.srv.Reload(next); err != nil {
		return err
	}
	a.bl.Reconfigure(blacklistConfig(next))
	if !sameCluster(next.Cluster, a.cfg.Cluster) {
		a.log.Warn("cluster section changed: it applies at the next start of gatehouse")
	}
	a.agents.Reload(next)
	if a.shared != nil {
		a.shared.Reload(next)
	}
	switch {
	case a.acme != nil && next.TLS.ACME != nil:
		if err := a.acme.Manage(next.TLS.ACME.Names); err != nil {
			a.log.Error("acme: names not managed", "err", err)
		}
	case (a.acme != nil) != (next.TLS.ACME != nil):
		a.log.Warn("tls.acme was added or removed: that takes effect at the next start")
	}
	a.health.Reload(next)
	if !reflect.DeepEqual(next.TURN, a.cfg.TURN) || (next.TURN.TLSListen != "" && !sameCertificates(next, a.cfg)) {
		// pion's server cannot change settings in place: restart it
		// (allocations end; clients allocate again). A renewed
		// certificate counts as a change when TURN speaks TLS.
		if r := a.relay.Swap(nil); r != nil {
			r.Close()
		}
		r, err := startTURN(next, a.events, a.srv.Gate(), a.log)
		if err != nil {
			a.log.Error("TURN server not restarted", "err", err)
		}
		a.relay.Store(r)
	}
	a.level.Set(parseLevel(next.Log.Level))
	logDescriptorLimits(a.log, next)
	switch {
	case a.admin != nil && next.Admin.Listen == "":
		// Stopped after this request: the one applying the change may be
		// on the admin listener itself. Shutdown lets it finish.
		old := a.admin
		a.admin = nil
		a.bg.Go(func() { old.Shutdown(context.Background()) })
		a.log.Info("admin UI stopped: admin.listen is no longer set")
	case a.admin != nil:
		if err := a.admin.Reconfigure(next); err != nil {
			a.log.Error("admin UI keeps part of its previous settings", "err", err)
		}
	case next.Admin.Listen != "":
		admin, err := a.startAdmin(next)
		if err != nil {
			a.log.Error("admin UI not started", "err", err)
		}
		a.admin = admin
	}
	a.cfg = next
	a.log.Info("configuration reloaded", "config", a.path, "services", len(next.Services))
	return nil
}

// startAdmin opens the admin listener.
func (a *app) startAdmin(cfg *configs.Config) (*webui.Server, error) {
	var cl webui.ClusterStatus
	if a.node != nil {
		cl = a.node // a nil *cluster.Node would make a non-nil interface
	}
	return webui.New(cfg, webui.Options{
		Cluster:   cl,
		Proxy:     a.srv,
		Blacklist: a.bl,
		Guard:     a.events,
		Events:    a.events,
		TURN:      a.relay.Load,
		ACME:      a.acmeCertificates(),
		Apply:     a.reload,
		Logger:    a.log,
		Version:   version,
		Agents:    a.webAgents(),
		Health:    a.health,
	})
}

// webAgents is what the admin UI lists: the cluster's view in a cluster.
func (a *app) webAgents() webui.Agents {
	if a.shared != nil {
		return a.shared
	}
	return a.agents
}

// blacklistConfig is the blacklist's part of cfg. In a cluster the state
// lives in the cluster's buckets, not in blacklist.state: a file of this
// node alone would bring back, at its next start, entries the others
// removed meanwhile.
func blacklistConfig(cfg *configs.Config) configs.Blacklist {
	b := cfg.Blacklist
	if cfg.Cluster.Enabled {
		b.State = ""
	}
	return b
}

// sameCluster tells whether a reload leaves the cluster section as it was
// (certificates compared by their contents).
func sameCluster(a, b configs.Cluster) bool {
	certs := func(c *tls.Certificate) [][]byte {
		if c == nil {
			return nil
		}
		return c.Certificate
	}
	if !slices.EqualFunc(certs(a.TLS.Loaded), certs(b.TLS.Loaded), bytes.Equal) {
		return false
	}
	a.TLS.Loaded, a.TLS.CAPool, b.TLS.Loaded, b.TLS.CAPool = nil, nil, nil, nil
	return reflect.DeepEqual(a, b)
}

// sameCertificates tells whether a and b offer the same tls certificates.
func sameCertificates(a, b *configs.Config) bool {
	return slices.EqualFunc(a.TLS.Certificates, b.TLS.Certificates, func(x, y configs.CertKey) bool {
		return slices.EqualFunc(x.Loaded.Certificate, y.Loaded.Certificate, bytes.Equal)
	})
}

// startTURN starts the STUN/TURN server when turn.listen is set.
func startTURN(cfg *configs.Config, guard turn.Guard, g *gate.Gate, log *slog.Logger) (*turn.Server, error) {
	if cfg.TURN.Listen == "" {
		return nil, nil
	}
	var certs []tls.Certificate
	for _, ck := range cfg.TLS.Certificates {
		certs = append(certs, ck.Loaded)
	}
	return turn.New(cfg.TURN, turn.Options{Guard: guard, Gate: g, Logger: log, Certificates: certs})
}

func logConfigErrors(log *slog.Logger, err error) {
	var errs configs.Errors
	if !errors.As(err, &errs) {
		log.Error("configuration", "err", err)
		return
	}
	for _, e := range errs {
		log.Error("configuration", "file", e.File, "line", e.Line, "key", e.Key, "err", e.Msg)
	}
}

// logDescriptorLimits logs the connection caps against the descriptor
// limit, and a warning for each cap a flood would pass only after the
// descriptors run out; then the configuration's own warnings (configs.Warnings).
func logDescriptorLimits(log *slog.Logger, cfg *configs.Config) {
	limit := configs.FileLimit()
	log.Info("connection limits", "max_conns", cfg.Limits.MaxConns, "max_conns_per_ip", cfg.Limits.MaxConnsPerIP,
		"max_conns_per_range", cfg.Limits.MaxConnsPerRange.String(), "descriptor_limit", limit)
	for _, w := range configs.DescriptorWarnings(cfg, limit) {
		log.Warn("descriptor limit: " + w)
	}
	for _, w := range configs.Warnings(cfg) {
		log.Warn(w)
	}
}
