package cluster

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/proxy"
	"github.com/gatehouse-pbx/gatehouse/tunnel"
)

// BucketAgents holds the agent registrations of every node:
//
//	gatehouse_agents    NAME.NODE → Registration of the tunnels NODE holds for NAME (memory,
//	                    max age AgentTTL, rewritten every AgentRefresh by NODE)
//
// NAME is the registered name in unpadded base64url (a DNS name may hold
// dots, which separate NATS key tokens; base64url's alphabet is all legal
// in a key), so the registrations of one name are the keys NAME.*: a set
// with one member per node, each written by its node alone (no two nodes
// ever write one key).
const BucketAgents = "gatehouse_agents"

const (
	// AgentRefresh is how often a node rewrites its registrations.
	AgentRefresh = 5 * time.Second
	// AgentTTL is how long a registration holds without a rewrite: the
	// bucket's max age, and what every node's copy enforces by its own
	// clock. A node killed with SIGKILL stops rewriting; its
	// registrations are gone from every other node within AgentTTL of its
	// last rewrite (at most AgentTTL + AgentRefresh after the kill).
	AgentTTL = 3 * AgentRefresh
)

// Registration is what one node tells the others about the tunnels it
// holds for one name.
type Registration struct {
	Name    string `json:"name"`
	Node    string `json:"node"`
	Account string `json:"account"`
	// Forward is the node's cluster.forward_listen; "" when it takes no
	// forwarded connections. A listen address without a host (":7444")
	// is dialled at the host the others know the node by (see forwardAddr).
	Forward string `json:"forward,omitempty"`
	// Epoch is when the node's process started: tunnel ids count from 1
	// in each process, so (node, epoch, id) names one tunnel.
	Epoch      int64          `json:"epoch"`
	Ports      map[string]int `json:"ports"`
	Tunnels    []TunnelRef    `json:"tunnels"`
	Registered time.Time      `json:"registered"` // the oldest tunnel's start
}

// TunnelRef is one tunnel of a Registration.
type TunnelRef struct {
	ID    uint64    `json:"id"`
	Agent string    `json:"agent"` // the agent's address as the node sees it
	Since time.Time `json:"since"`
}

// Local is this node's edge of agent tunnels (*tunnel.Server).
type Local interface {
	proxy.Agents
	ServeTLS(conn *tls.Conn)
	Tunnels() []tunnel.Status
	Disconnect(id uint64) bool
}

// remote is a registration of another node as this node holds it.
type remote struct {
	reg  Registration
	seen time.Time // when this node last heard it written, by its own clock
}

// Agents makes this node's agent tunnels the cluster's: it registers them
// in BucketAgents, keeps a copy of every node's registrations fed by a
// watcher, and carries a connection for a name that another node's tunnel
// serves to that node over cluster.forward_listen (forward.go). It is the
// proxy's Agents (and the admin UI's): what the local tunnels serve is
// served by them, the rest is forwarded.
type Agents struct {
	n     *Node
	local Local
	epoch int64
	cfg   atomic.Pointer[configs.Config]
	fwd   *forwarder
	wake  chan struct{}
	ctx   context.Context
	stop  context.CancelFunc
	wg    sync.WaitGroup // run, the watcher, the forward listener
	now   func() time.Time

	mu     sync.Mutex                    // guards the fields below
	byName map[string]map[string]*remote // name → node → registration
	mine   map[string]bool               // keys this node wrote and has not deleted
	next   uint64                        // spreads forwarded connections over the nodes of a name
	kv     jetstream.KeyValue            // nil until the bucket is open
	stats  map[fwdKey]*fwdStats
}

// NewAgents prepares the cluster side of local tunnels for n; nothing runs
// until Start, but Changed may be called before (tunnel.Options.Changed).
func NewAgents(n *Node) *Agents {
	a := &Agents{n: n, epoch: time.Now().UnixNano(), wake: make(chan struct{}, 1), now: time.Now,
		byName: map[string]map[string]*remote{}, mine: map[string]bool{}, stats: map[fwdKey]*fwdStats{}}
	a.ctx, a.stop = context.WithCancel(context.Background())
	return a
}

// Changed tells that the local tunnels changed: they are registered anew at once.
func (a *Agents) Changed() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// Start registers local's tunnels from now on and, with
// cluster.forward_listen, takes connections forwarded by the other nodes.
// It fails only when forward_listen cannot be opened.
func (a *Agents) Start(cfg *configs.Config, local Local) error {
	a.local = local
	a.cfg.Store(cfg)
	if cfg.Cluster.ForwardListen != "" {
		f, err := a.listenForward(cfg)
		if err != nil {
			return err
		}
		a.fwd = f
		a.wg.Go(f.accept)
	}
	a.wg.Go(a.run)
	return nil
}

// Reload takes cfg's services for connections forwarded from now on.
func (a *Agents) Reload(cfg *configs.Config) { a.cfg.Store(cfg) }

// Close deletes this node's registrations (for a few seconds at most: the
// others would see them expire anyway), stops forwarding and waits. Call
// it before Node.Close.
func (a *Agents) Close() error {
	var err error
	if a.fwd != nil {
		err = a.fwd.close()
	}
	a.stop()
	a.wg.Wait()
	return err
}

// key is the bucket key of name's registration by node.
func key(name, node string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(name)) + "." + node
}

// parseKey undoes key.
func parseKey(k string) (name, node string, err error) {
	enc, node, ok := strings.Cut(k, ".")
	if !ok || !validNode(node) {
		return "", "", fmt.Errorf("key %q is not NAME.NODE", k)
	}
	b, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return "", "", fmt.Errorf("key %q: %w", k, err)
	}
	return string(b), node, nil
}

func validNode(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// registrations are the local tunnels as this node registers them, by key.
func (a *Agents) registrations() map[string]Registration {
	out := map[string]Registration{}
	forward := ""
	if cfg := a.cfg.Load(); cfg != nil {
		forward = cfg.Cluster.ForwardListen
	}
	for _, t := range a.local.Tunnels() {
		for _, name := range t.Names {
			k := key(name, a.n.cfg.Node)
			r, ok := out[k]
			if !ok {
				ports, _ := a.local.Ports(t.Account, name)
				r = Registration{Name: name, Node: a.n.cfg.Node, Account: t.Account, Forward: forward,
					Epoch: a.epoch, Ports: ports, Registered: t.Since}
			}
			r.Tunnels = append(r.Tunnels, TunnelRef{ID: t.ID, Agent: t.Agent, Since: t.Since})
			if t.Since.Before(r.Registered) {
				r.Registered = t.Since
			}
			out[k] = r
		}
	}
	return out
}

// run opens the bucket (retrying while the cluster has no quorum), starts
// the watcher, and writes the registrations: at once when the tunnels
// change, every AgentRefresh in any case, and again a second after a
// failed write. At the end it deletes them.
func (a *Agents) run() {
	var kv jetstream.KeyValue
	for wait := time.Duration(0); kv == nil; wait = time.Second {
		select {
		case <-a.ctx.Done():
			return
		case <-time.After(wait):
		}
		var err error
		if kv, err = a.open(); err != nil {
			a.n.fail("cluster: waiting for the agents bucket", err)
		}
	}
	a.adopt(kv)
	a.mu.Lock()
	a.kv = kv
	a.mu.Unlock()
	a.wg.Go(func() { a.watch(kv) })
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last time.Time
	dirty := true
	for {
		if dirty || a.now().Sub(last) >= AgentRefresh {
			dirty = !a.publish(kv)
			last = a.now()
			a.sweep()
		}
		select {
		case <-a.ctx.Done():
			a.unpublish(kv)
			return
		case <-a.wake:
			dirty = true
		case <-tick.C:
		}
	}
}

// adopt takes the keys of this node's name that are in the bucket as its
// own, so that the first publish deletes those it no longer has: a process
// killed with SIGKILL and started again would otherwise leave its
// registrations to expire, and the others would forward to it meanwhile.
func (a *Agents) adopt(kv jetstream.KeyValue) {
	ctx, cancel := context.WithTimeout(a.ctx, opTimeout)
	defer cancel()
	l, err := kv.ListKeysFiltered(ctx, "*."+a.n.cfg.Node)
	if err != nil {
		return // they expire
	}
	defer l.Stop()
	for k := range l.Keys() {
		a.mu.Lock()
		a.mine[k] = true
		a.mu.Unlock()
	}
}

func (a *Agents) open() (jetstream.KeyValue, error) {
	ctx, cancel := context.WithTimeout(a.ctx, opTimeout)
	defer cancel()
	kv, err := a.n.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: BucketAgents,
		Storage: jetstream.MemoryStorage, Replicas: a.n.cfg.Replicas, History: 1, TTL: AgentTTL,
		// A registration that expires leaves a marker, which the
		// watchers see: the others drop it at once, not at their sweep.
		LimitMarkerTTL: AgentTTL})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", BucketAgents, err)
	}
	return kv, nil
}

// publish writes every local registration and deletes those that ended;
// it reports whether all went out.
func (a *Agents) publish(kv jetstream.KeyValue) bool {
	want := a.registrations()
	a.mu.Lock()
	gone := []string{}
	for k := range a.mine {
		if _, ok := want[k]; !ok {
			gone = append(gone, k)
		}
	}
	a.mu.Unlock()
	ok := true
	for k, r := range want {
		val, _ := json.Marshal(r)
		ctx, cancel := context.WithTimeout(a.ctx, opTimeout)
		_, err := kv.Put(ctx, k, val)
		cancel()
		if err != nil {
			a.n.fail("cluster: agent registration not written", fmt.Errorf("%s %s: %w", BucketAgents, r.Name, err))
			ok = false
			continue
		}
		a.mu.Lock()
		a.mine[k] = true
		a.mu.Unlock()
	}
	for _, k := range gone {
		ctx, cancel := context.WithTimeout(a.ctx, opTimeout)
		err := kv.Delete(ctx, k)
		cancel()
		if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			a.n.fail("cluster: agent registration not deleted", fmt.Errorf("%s %s: %w", BucketAgents, k, err))
			ok = false
			continue
		}
		a.mu.Lock()
		delete(a.mine, k)
		a.mu.Unlock()
	}
	return ok
}

// unpublish deletes this node's registrations as it leaves.
func (a *Agents) unpublish(kv jetstream.KeyValue) {
	a.mu.Lock()
	keys := slices.Collect(maps.Keys(a.mine))
	a.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, k := range keys {
		if kv.Delete(ctx, k) != nil {
			return // the cluster is out of reach: the entries expire
		}
	}
}

// watch feeds the bucket's entries to apply: first what it holds, then
// each change; a watcher that ends is started again a second later.
func (a *Agents) watch(kv jetstream.KeyValue) {
	for {
		w, err := kv.WatchAll(a.ctx)
		if err == nil {
			for e := range w.Updates() {
				if e != nil {
					a.apply(e)
				}
			}
			w.Stop()
		} else {
			a.n.fail("cluster: cannot watch "+BucketAgents, err)
		}
		select {
		case <-a.ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// apply takes one entry of another node into the copy: a put adds or
// renews it, a delete or an expiry marker drops it.
func (a *Agents) apply(e jetstream.KeyValueEntry) {
	name, node, err := parseKey(e.Key())
	if err != nil {
		a.n.log.Warn("cluster: bad entry ignored", "bucket", BucketAgents, "err", err)
		return
	}
	if node == a.n.cfg.Node {
		return // the local tunnels are known first hand
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		if m := a.byName[name]; m != nil {
			delete(m, node)
			if len(m) == 0 {
				delete(a.byName, name)
			}
		}
		return
	}
	var r Registration
	if err := json.Unmarshal(e.Value(), &r); err != nil || r.Name != name || r.Node != node || r.Account == "" {
		a.n.log.Warn("cluster: bad entry ignored", "bucket", BucketAgents, "key", e.Key(), "node", node)
		return
	}
	m := a.byName[name]
	if m == nil {
		m = map[string]*remote{}
		a.byName[name] = m
	}
	m[node] = &remote{reg: r, seen: a.now()}
}

// sweep drops the registrations not rewritten within AgentTTL: their node
// is gone, or out of this node's reach.
func (a *Agents) sweep() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for name, m := range a.byName {
		for node, r := range m {
			if a.now().Sub(r.seen) >= AgentTTL {
				delete(m, node)
			}
		}
		if len(m) == 0 {
			delete(a.byName, name)
		}
	}
}

// remotes returns the live registrations of account for name by other
// nodes that take forwarded connections, starting with the next in turn.
func (a *Agents) remotes(account, name string) []Registration {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []Registration
	for _, r := range a.byName[name] {
		if r.reg.Account == account && r.reg.Forward != "" && a.now().Sub(r.seen) < AgentTTL {
			out = append(out, r.reg)
		}
	}
	slices.SortFunc(out, func(x, y Registration) int { return strings.Compare(x.Node, y.Node) })
	if len(out) > 1 {
		a.next++
		k := int(a.next % uint64(len(out)))
		out = append(out[k:], out[:k]...)
	}
	return out
}

// Ports implements proxy.Agents: the local tunnels' ports, else those
// another node's tunnel registered. It never waits on the network.
func (a *Agents) Ports(account, name string) (map[string]int, bool) {
	if p, ok := a.local.Ports(account, name); ok {
		return p, true
	}
	if rs := a.remotes(account, name); len(rs) > 0 {
		return rs[0].Ports, true
	}
	return nil, false
}

// Dial implements proxy.Agents: a stream through a local tunnel, else a
// connection carried to a node whose tunnel serves name. A node that
// cannot be reached, or no longer has the tunnel, is skipped; when none is
// left the error matches proxy.ErrNoTunnel (unavailable, not the client's
// fault). The agent failing to reach its target is an error as a local
// tunnel's is.
func (a *Agents) Dial(ctx context.Context, account, name, typ string, useTLS bool, client netip.AddrPort) (net.Conn, error) {
	c, err := a.local.Dial(ctx, account, name, typ, useTLS, client)
	if err == nil || !errors.Is(err, proxy.ErrNoTunnel) {
		return c, err
	}
	errs := []error{err}
	st := tunnel.Stream{Service: name, Type: typ, TLS: useTLS, Client: client}
	for _, r := range a.remotes(account, name) {
		c, err := a.forward(ctx, r, st)
		if err == nil {
			return c, nil
		}
		if errors.Is(err, errAgentFailed) || ctx.Err() != nil {
			return nil, err
		}
		errs = append(errs, err)
	}
	return nil, proxy.ErrNoTunnel.With(errors.Join(errs...))
}

// ServeTLS hands an agent that arrived on listen.any to the local tunnels.
func (a *Agents) ServeTLS(conn *tls.Conn) { a.local.ServeTLS(conn) }

// Disconnect closes a local tunnel; another node's are closed there.
func (a *Agents) Disconnect(id uint64) bool { return a.local.Disconnect(id) }

// Tunnels is the cluster's view for the admin UI and API: the local
// tunnels (Node set to this node) and, from the registrations, those of
// the other nodes (Remote; streams, bytes and heartbeat unknown here).
func (a *Agents) Tunnels() []tunnel.Status {
	out := a.local.Tunnels()
	for i := range out {
		out[i].Node = a.n.cfg.Node
	}
	type id struct {
		node  string
		epoch int64
		id    uint64
	}
	byID := map[id]*tunnel.Status{}
	a.mu.Lock()
	for _, m := range a.byName {
		for node, r := range m {
			if a.now().Sub(r.seen) >= AgentTTL {
				continue
			}
			for _, t := range r.reg.Tunnels {
				k := id{node, r.reg.Epoch, t.ID}
				s := byID[k]
				if s == nil {
					s = &tunnel.Status{ID: t.ID, Account: r.reg.Account, Agent: t.Agent, Since: t.Since, Node: node, Remote: true}
					byID[k] = s
				}
				s.Names = append(s.Names, r.reg.Name)
			}
		}
	}
	a.mu.Unlock()
	var rs []tunnel.Status
	for _, s := range byID {
		slices.Sort(s.Names)
		rs = append(rs, *s)
	}
	slices.SortFunc(rs, func(x, y tunnel.Status) int {
		if c := strings.Compare(x.Node, y.Node); c != 0 {
			return c
		}
		return cmp.Compare(x.ID, y.ID)
	})
	return append(out, rs...)
}

// forwardAddr is where to dial r's node: its forward_listen, with the
// host taken, when that has none (":7444", "0.0.0.0:7444"), from the
// embedded server's route to the node, else from the node's cluster
// address (gatehouse_nodes).
func (a *Agents) forwardAddr(r Registration) (string, error) {
	host, port, err := net.SplitHostPort(r.Forward)
	if err != nil {
		return "", fmt.Errorf("node %s: forward address %q: %w", r.Node, r.Forward, err)
	}
	if ip, err := netip.ParseAddr(host); host != "" && (err != nil || !ip.IsUnspecified()) {
		return r.Forward, nil
	}
	if a.n.ns != nil {
		if rz, err := a.n.ns.Routez(&server.RoutezOptions{}); err == nil {
			for _, rt := range rz.Routes {
				if rt.RemoteName == r.Node && rt.IP != "" {
					return net.JoinHostPort(rt.IP, port), nil
				}
			}
		}
	}
	a.n.mu.Lock()
	info, ok := a.n.nodes[r.Node]
	a.n.mu.Unlock()
	if ok {
		if h, _, err := net.SplitHostPort(info.Address); err == nil && h != "" {
			if ip, err := netip.ParseAddr(h); err != nil || !ip.IsUnspecified() {
				return net.JoinHostPort(h, port), nil
			}
		}
	}
	return "", fmt.Errorf("node %s: forward_listen %q has no host, and no route or address of the node is known", r.Node, r.Forward)
}
