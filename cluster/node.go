// Package cluster makes several gatehouse nodes one appliance: their
// blacklists share client state through NATS JetStream key-value buckets.
//
// By default every node embeds a NATS server and the nodes' servers form a
// NATS cluster among themselves (routes under mutual TLS); with
// cluster.nats.url the nodes use an existing NATS cluster. A Node implements
// blacklist.Shared: what its List changes is queued and written to the
// buckets by one goroutine, so the accept path never waits on the network,
// and bucket watchers feed what the other nodes wrote into the List's Apply
// methods. Each node thus keeps its own full copy and enforces it when the
// cluster is out of reach; its queued writes go out when it is back.
//
// Buckets (keys are client networks with ':' written '_'):
//
//	gatehouse_counts    NODE.CLIENT → that node's request times in the Window (memory, max age 2 min)
//	gatehouse_blocks    CLIENT → blacklist.Block, per-key TTL until the block ends;
//	                    a delete is an administrator's release, purges (expiry) are ignored
//	gatehouse_manual    NETWORK → blacklist.Listing of a run-time manual entry
//	gatehouse_whitelist NETWORK → blacklist.Listing of a run-time whitelist entry
//	gatehouse_nodes     NODE → NodeInfo, rewritten every few seconds (memory, max age 1 min)
//	gatehouse_certs     certmagic storage of tls.acme (certstore.go)
//	gatehouse_locks     certmagic locks, with a lease (certstore.go)
//
// Blocks, releases and list entries are also published as plain NATS
// messages, which need no stream leader (fast.go); a node that heard one
// writes it to the bucket if its own node did not (witness.go). The blocks
// and counts buckets are bounded by blacklist.max_tracked (bounds.go).
//
// Agent registrations (gatehouse_agents) and the carrying of connections
// for agents between nodes (cluster.forward_listen) are Agents, in
// agents.go and forward.go: it uses the Node's connection and has its own
// bucket, watcher and lifetime.
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gatehouse-pbx/gatehouse/blacklist"
	"github.com/gatehouse-pbx/gatehouse/configs"
)

// Bucket names.
const (
	BucketCounts    = "gatehouse_counts"
	BucketBlocks    = "gatehouse_blocks"
	BucketManual    = "gatehouse_manual"
	BucketWhitelist = "gatehouse_whitelist"
	BucketNodes     = "gatehouse_nodes"
)

const (
	// maxQueued bounds the writes waiting for the cluster, of each kind;
	// beyond it new ones are dropped and counted (Status.Dropped).
	maxQueued = 100000
	// heartbeat is how often a node rewrites its entry in BucketNodes.
	heartbeat = 5 * time.Second
	// opTimeout bounds one bucket operation.
	opTimeout = 5 * time.Second
	// writeTimeout bounds one write of the queue: a write to a stream
	// whose leader is gone waits for no answer, and the sooner the writer
	// gives up, the sooner it retries on the new leader. A write that
	// timed out but was stored is written again, which changes nothing.
	writeTimeout = 2 * time.Second
)

// Options are the parts of a Node that do not come from the configuration.
type Options struct {
	Logger  *slog.Logger // nil is slog.Default()
	Version string       // shown to the other nodes
	// Address is what the other nodes show as this node's address; ""
	// is cluster.listen.
	Address string
	// MaxTracked is blacklist.max_tracked: it bounds the entries of the
	// buckets that clients feed (see bound). 0: unbounded.
	MaxTracked int
}

// Node is this process's membership in the cluster.
type Node struct {
	cfg   configs.Cluster
	max   int64 // Options.MaxTracked
	list  *blacklist.List
	log   *slog.Logger
	ns    *server.Server // nil with cluster.nats.url
	nc    *nats.Conn
	js    jetstream.JetStream
	info  NodeInfo
	stop  context.CancelFunc // ends the watchers and the writer
	ctx   context.Context
	wg    sync.WaitGroup // the writer (run)
	watch sync.WaitGroup // the bucket watchers
	wake  chan struct{}  // a write was queued
	tells chan op        // changes for the teller (see fast.go)
	heard chan heard     // changes told by others, for the witness (see witness.go)
	// opened is closed when the buckets are open (the node has joined).
	opened chan struct{}
	certs  *CertStore
	flush  chan struct{} // closed by Close: the writer writes what is queued and returns

	mu      sync.Mutex        // guards the fields below
	ops     []op              // writes in the order made
	counts  map[string][]byte // counts key → latest value: only the latest matters
	dropped uint64
	lastErr string
	errAt   time.Time
	ready   bool
	nodes   map[string]NodeInfo // from BucketNodes
	sizes   map[string]uint64   // entries of each bucket, at the last heartbeat
	closed  bool
}

// NodeInfo is what a node tells the others about itself.
type NodeInfo struct {
	Name    string    `json:"name"`
	Address string    `json:"address,omitempty"`
	Since   time.Time `json:"since"`
	Version string    `json:"version,omitempty"`
	Seen    time.Time `json:"seen"` // when it last wrote this
	Quorum  bool      `json:"quorum"`
	// Current: its copies of the buckets are up to date (see caughtUp).
	Current bool `json:"current"`
}

type opKind int

const (
	opPut opKind = iota
	opDelete
	opBlock
)

type op struct {
	kind   opKind
	bucket string
	key    string
	val    []byte
	until  time.Time // opBlock
}

// Start joins the cluster that cfg describes, for list: it starts the
// embedded NATS server (when cfg has no nats.url) and connects, then opens
// the buckets and watches them in the background, retrying until the
// cluster has a quorum. It fails only on what retrying cannot fix, such as
// a route port in use.
func Start(cfg configs.Cluster, list *blacklist.List, opts Options) (*Node, error) {
	if !cfg.Enabled {
		return nil, errors.New("cluster: no cluster section")
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	n := &Node{
		cfg:    cfg,
		max:    int64(opts.MaxTracked),
		list:   list,
		log:    log,
		wake:   make(chan struct{}, 1),
		tells:  make(chan op, maxTells),
		heard:  make(chan heard, maxTells),
		opened: make(chan struct{}),
		flush:  make(chan struct{}),
		counts: make(map[string][]byte),
		nodes:  make(map[string]NodeInfo),
		info: NodeInfo{Name: cfg.Node, Address: opts.Address, Since: time.Now().Round(0),
			Version: opts.Version},
	}
	if n.info.Address == "" {
		n.info.Address = cfg.Listen
	}
	var err error
	token := rand.Text()
	if cfg.Embedded() {
		if n.ns, err = startServer(&cfg, token, log); err != nil {
			return nil, err
		}
	}
	if n.nc, err = connect(&cfg, n.ns, token, log); err != nil {
		n.shutdownServer()
		return nil, fmt.Errorf("cluster: connect to NATS: %w", err)
	}
	if n.js, err = jetstream.New(n.nc); err != nil {
		n.nc.Close()
		n.shutdownServer()
		return nil, fmt.Errorf("cluster: JetStream: %w", err)
	}
	n.ctx, n.stop = context.WithCancel(context.Background())
	n.certs = &CertStore{n: n}
	list.Share(n, cfg.Node)
	n.wg.Go(n.run)
	n.wg.Go(n.teller)
	n.wg.Go(n.witness)
	return n, nil
}

// Close writes what is queued (for a few seconds at most), stops watching
// and leaves the cluster. The List keeps what it has.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	n.mu.Unlock()
	close(n.flush)
	timer := time.AfterFunc(opTimeout, n.stop) // a writer stuck on an unreachable cluster
	n.wg.Wait()
	timer.Stop()
	n.stop()
	n.watch.Wait()
	n.certs.wait()
	n.nc.Close()
	n.shutdownServer()
	return nil
}

func (n *Node) shutdownServer() {
	if n.ns != nil {
		n.ns.Shutdown()
		n.ns.WaitForShutdown()
	}
}

// buckets are the open key-value buckets.
type buckets struct {
	counts, blocks, manual, white, nodes jetstream.KeyValue
}

// open makes or updates the buckets. It fails while the cluster has no
// JetStream quorum (not enough nodes up yet).
func (n *Node) open(ctx context.Context) (*buckets, error) {
	mk := func(c jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
		c.Replicas, c.History = n.cfg.Replicas, 1
		ctx, cancel := context.WithTimeout(ctx, opTimeout)
		defer cancel()
		kv, err := n.js.CreateOrUpdateKeyValue(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("bucket %s: %w", c.Bucket, err)
		}
		return kv, nil
	}
	var b buckets
	var err error
	if b.counts, err = mk(jetstream.KeyValueConfig{Bucket: BucketCounts, Storage: jetstream.MemoryStorage,
		TTL: 2 * blacklist.Window}); err != nil {
		return nil, err
	}
	// Per-key TTL (NATS server 2.11 and later): a block leaves the bucket
	// when it ends.
	if b.blocks, err = mk(jetstream.KeyValueConfig{Bucket: BucketBlocks, Storage: jetstream.FileStorage,
		LimitMarkerTTL: time.Minute}); err != nil {
		return nil, err
	}
	if b.manual, err = mk(jetstream.KeyValueConfig{Bucket: BucketManual, Storage: jetstream.FileStorage}); err != nil {
		return nil, err
	}
	if b.white, err = mk(jetstream.KeyValueConfig{Bucket: BucketWhitelist, Storage: jetstream.FileStorage}); err != nil {
		return nil, err
	}
	if err := n.bound(ctx, b.blocks, n.max); err != nil {
		return nil, err
	}
	if err := n.bound(ctx, b.counts, n.max*n.nodesBound()); err != nil {
		return nil, err
	}
	if b.nodes, err = mk(jetstream.KeyValueConfig{Bucket: BucketNodes, Storage: jetstream.MemoryStorage,
		TTL: time.Minute}); err != nil {
		return nil, err
	}
	return &b, nil
}

// run opens the buckets, starts the watchers and then writes what the List
// queues, until Close.
func (n *Node) run() {
	var kv *buckets
	for wait := time.Duration(0); kv == nil; wait = time.Second {
		select {
		case <-n.ctx.Done():
			return
		case <-n.flush:
			return
		case <-time.After(wait):
		}
		var err error
		if kv, err = n.open(n.ctx); err != nil {
			n.fail("cluster: waiting for JetStream (a quorum of the nodes)", err)
		}
	}
	n.mu.Lock()
	n.ready = true
	n.lastErr = ""
	n.mu.Unlock()
	close(n.opened)
	n.log.Info("cluster: joined", "node", n.cfg.Node, "replicas", n.cfg.Replicas, "embedded", n.ns != nil)
	if sub, err := n.listen(); err != nil {
		n.fail("cluster: cannot hear the other nodes' changes; the buckets still carry them", err)
	} else {
		defer sub.Unsubscribe()
	}
	n.watch.Go(func() { n.watchBucket(kv.counts, n.applyCount) })
	n.watch.Go(func() { n.watchBucket(kv.blocks, n.applyBlock) })
	n.watch.Go(func() { n.watchBucket(kv.manual, func(e jetstream.KeyValueEntry) { n.applyListing(false, e) }) })
	n.watch.Go(func() { n.watchBucket(kv.white, func(e jetstream.KeyValueEntry) { n.applyListing(true, e) }) })
	n.watch.Go(func() { n.watchBucket(kv.nodes, n.applyNode) })

	beat := time.NewTicker(heartbeat)
	defer beat.Stop()
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	n.beat(kv)
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.flush:
			// Everything queued, while each pass makes progress (Close
			// stops a writer that cannot reach the cluster).
			for prev := -1; ; {
				n.write(kv)
				q := n.queued()
				if q == 0 || q == prev || n.ctx.Err() != nil {
					return
				}
				prev = q
			}
		case <-beat.C:
			n.beat(kv)
		case <-n.wake:
		case <-retry.C:
		}
		n.write(kv)
	}
}

// fail records err, logging it at most once a minute.
func (n *Node) fail(msg string, err error) {
	n.mu.Lock()
	now := time.Now()
	logIt := now.Sub(n.errAt) >= time.Minute
	if logIt {
		n.errAt = now
	}
	n.lastErr = err.Error()
	n.mu.Unlock()
	if logIt {
		n.log.Warn(msg, "node", n.cfg.Node, "err", err)
	}
}

// write sends the queued writes in order. On the first failure it puts
// back what is left (ahead of anything queued since) and returns: the
// writer tries again a second later.
func (n *Node) write(kv *buckets) {
	n.mu.Lock()
	ops, counts := n.ops, n.counts
	n.ops, n.counts = nil, make(map[string][]byte)
	n.mu.Unlock()
	for i, o := range ops {
		if err := n.do(kv, o); err != nil {
			n.fail("cluster: write failed; kept to retry", fmt.Errorf("%s %s: %w", o.bucket, o.key, err))
			n.requeue(ops[i:], counts)
			return
		}
	}
	n.writeCounts(counts)
}

// queued is how many writes wait.
func (n *Node) queued() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.ops) + len(n.counts)
}

func (n *Node) requeue(ops []op, counts map[string][]byte) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.ops = append(ops, n.ops...)
	for k, v := range counts {
		if _, newer := n.counts[k]; !newer {
			n.counts[k] = v
		}
	}
}

func (n *Node) do(kv *buckets, o op) error {
	ctx, cancel := context.WithTimeout(n.ctx, writeTimeout)
	defer cancel()
	b := map[string]jetstream.KeyValue{BucketBlocks: kv.blocks, BucketManual: kv.manual,
		BucketWhitelist: kv.white, BucketCounts: kv.counts}[o.bucket]
	switch o.kind {
	case opPut:
		_, err := b.Put(ctx, o.key, o.val)
		return err
	case opDelete:
		err := b.Delete(ctx, o.key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			err = nil
		}
		return err
	default:
		return putBlock(ctx, b, o)
	}
}

// putBlock writes a block with a TTL to its end. Of two blocks of one
// client the later end wins: an earlier one in the bucket is purged (which
// the watchers ignore) and replaced.
func putBlock(ctx context.Context, b jetstream.KeyValue, o op) error {
	for range 3 {
		ttl := time.Until(o.until).Round(time.Second)
		if ttl < time.Second {
			return nil // ended while queued
		}
		_, err := b.Create(ctx, o.key, o.val, jetstream.KeyTTL(ttl))
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return err
		}
		e, err := b.Get(ctx, o.key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		var cur blacklist.Block
		if json.Unmarshal(e.Value(), &cur) == nil && !cur.Until.Before(o.until) {
			return nil
		}
		if err := b.Purge(ctx, o.key, jetstream.LastRevision(e.Revision())); err != nil {
			var apiErr *jetstream.APIError
			if !errors.As(err, &apiErr) {
				return err
			}
			// Another node changed it meanwhile: look again.
		}
	}
	return errors.New("block changed by other nodes three times in a row")
}

// beat rewrites this node's entry in BucketNodes.
func (n *Node) beat(kv *buckets) {
	info := n.info
	info.Seen = time.Now().Round(0)
	info.Quorum = n.quorum()
	info.Current = n.caughtUp()
	val, _ := json.Marshal(info)
	ctx, cancel := context.WithTimeout(n.ctx, opTimeout)
	defer cancel()
	if _, err := kv.nodes.Put(ctx, n.cfg.Node, val); err != nil {
		n.fail("cluster: heartbeat not written", err)
		return
	}
	n.measure(kv)
}

// quorum reports whether this node's server is current with the JetStream
// meta leader and routed to a majority of the nodes (with an external NATS,
// whose cluster it cannot see: whether it is connected).
func (n *Node) quorum() bool {
	if n.ns == nil {
		return n.nc.IsConnected()
	}
	if len(n.cfg.Peers) == 0 {
		return n.ns.JetStreamEnabled()
	}
	return n.ns.JetStreamIsCurrent() && n.majority()
}

// queue adds o to the writes and wakes the writer.
func (n *Node) queue(o ...op) {
	if !n.enqueue(o...) {
		return
	}
	for _, c := range o {
		select {
		case n.tells <- c:
		default: // the teller is behind: the bucket write carries it
		}
	}
}

// enqueue adds o to the writes, unless the queue is full.
func (n *Node) enqueue(o ...op) bool {
	n.mu.Lock()
	if len(n.ops)+len(o) > maxQueued {
		n.dropped += uint64(len(o))
		n.mu.Unlock()
		return false
	}
	n.ops = append(n.ops, o...)
	n.mu.Unlock()
	n.signal()
	return true
}

func (n *Node) signal() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// Counted implements blacklist.Shared.
func (n *Node) Counted(key netip.Prefix, hits []time.Time) {
	ts := make([]int64, len(hits))
	for i, h := range hits {
		ts[i] = h.UnixNano()
	}
	val, _ := json.Marshal(ts)
	k := n.cfg.Node + "." + encode(key)
	n.mu.Lock()
	if _, ok := n.counts[k]; !ok && len(n.counts) >= maxQueued {
		n.dropped++
		n.mu.Unlock()
		return
	}
	n.counts[k] = val
	n.mu.Unlock()
	n.signal()
}

// Blocked implements blacklist.Shared.
func (n *Node) Blocked(key netip.Prefix, b blacklist.Block) {
	val, _ := json.Marshal(b)
	n.queue(op{kind: opBlock, bucket: BucketBlocks, key: encode(key), val: val, until: b.Until})
}

// Released implements blacklist.Shared.
func (n *Node) Released(key netip.Prefix) {
	n.queue(op{kind: opDelete, bucket: BucketBlocks, key: encode(key)},
		op{kind: opDelete, bucket: BucketCounts, key: n.cfg.Node + "." + encode(key)})
}

// Listed implements blacklist.Shared.
func (n *Node) Listed(white bool, p netip.Prefix, e *blacklist.Listing) {
	bucket := BucketManual
	if white {
		bucket = BucketWhitelist
	}
	if e == nil {
		n.queue(op{kind: opDelete, bucket: bucket, key: encode(p)})
		return
	}
	val, _ := json.Marshal(e)
	n.queue(op{kind: opPut, bucket: bucket, key: encode(p), val: val})
}

// watchBucket feeds every entry of kv to apply: first what the bucket holds (so
// a node that starts or rejoins catches up), then each change. A watcher
// that ends while the Node runs is started again, from the revision after
// the last one applied; applying an entry twice changes nothing.
//
// A watcher is an ordered consumer, which lives on one server, usually
// the leader of the bucket's stream. When that server dies the client
// notices only after two missed idle heartbeats (10 s) and then retries
// with a backoff: over 20 s without updates after a leader loss. So the
// watcher is also started again as soon as the stream elects a new
// leader (the JetStream advisory), which bounds the gap by the election
// (nats-server's raft: 4 to 9 s after the leader's last heartbeat).
func (n *Node) watchBucket(kv jetstream.KeyValue, apply func(jetstream.KeyValueEntry)) {
	var last uint64 // revision of the last entry applied
	moved := make(chan struct{}, 1)
	sub, err := n.nc.Subscribe(leaderElected+"KV_"+kv.Bucket(), func(*nats.Msg) {
		select {
		case moved <- struct{}{}:
		default:
		}
		n.signal() // the writer may be waiting to retry on the new leader
	})
	if err != nil {
		n.fail("cluster: cannot follow the leaders of "+kv.Bucket(), err)
	} else {
		defer sub.Unsubscribe()
	}
	for {
		var opts []jetstream.WatchOpt
		if last > 0 {
			opts = append(opts, jetstream.ResumeFromRevision(last+1))
		}
		w, err := kv.WatchAll(n.ctx, opts...)
		if err == nil {
			n.follow(kv, w, moved, &last, apply)
			w.Stop()
		} else {
			n.fail("cluster: cannot watch "+kv.Bucket(), err)
		}
		select {
		case <-n.ctx.Done():
			return
		case <-moved: // a new leader: watch again at once
		case <-time.After(time.Second):
		}
	}
}

// leaderElected is the subject prefix of the advisory a stream's new leader
// publishes (followed by the stream's name).
const leaderElected = "$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED."

// follow applies w's entries until it ends, the Node stops, the stream
// has a new leader or the watcher stalls.
//
// A watcher stalls when the server holding its consumer dies but the
// stream's leader lives on elsewhere (no advisory then): so once a second
// follow asks the stream for its last message, and a watcher that is
// behind it and delivered nothing for two checks in a row is started
// again. (A last message that expired is not waited for: the stream then
// has no messages.)
func (n *Node) follow(kv jetstream.KeyValue, w jetstream.KeyWatcher, moved chan struct{}, last *uint64, apply func(jetstream.KeyValueEntry)) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	seen, behind := *last, 0
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e != nil { // nil marks the end of the initial values
				*last = e.Revision()
				apply(e)
			}
		case <-tick.C:
			if *last != seen {
				seen, behind = *last, 0
				continue
			}
			if n.streamAhead(kv, *last) {
				if behind++; behind >= 2 {
					n.log.Info("cluster: watcher stalled; watching again", "bucket", kv.Bucket(), "revision", *last)
					return
				}
			} else {
				behind = 0
			}
		case <-moved:
			// Back into the channel: watchBucket restarts at once.
			select {
			case moved <- struct{}{}:
			default:
			}
			return
		case <-n.ctx.Done():
			return
		}
	}
}

// streamAhead reports whether kv's stream holds a message after revision
// last (false when it cannot tell).
func (n *Node) streamAhead(kv jetstream.KeyValue, last uint64) bool {
	ctx, cancel := context.WithTimeout(n.ctx, time.Second)
	defer cancel()
	st, err := kv.Status(ctx)
	if err != nil {
		return false
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok || bs.StreamInfo() == nil {
		return false
	}
	state := bs.StreamInfo().State
	return state.Msgs > 0 && state.LastSeq > last
}

func (n *Node) applyCount(e jetstream.KeyValueEntry) {
	node, client, ok := strings.Cut(e.Key(), ".")
	p, err := decode(client)
	if !ok || err != nil || node == n.cfg.Node {
		return // its own counts the List has; a restarted node starts counting anew
	}
	var hits []time.Time
	if e.Operation() == jetstream.KeyValuePut {
		var ts []int64
		if json.Unmarshal(e.Value(), &ts) != nil {
			n.log.Warn("cluster: bad entry ignored", "bucket", BucketCounts, "key", e.Key())
			return
		}
		for _, t := range ts {
			hits = append(hits, time.Unix(0, t))
		}
	}
	n.list.ApplyCounts(node, p, hits)
}

func (n *Node) applyBlock(e jetstream.KeyValueEntry) {
	p, err := decode(e.Key())
	if err != nil {
		return
	}
	switch e.Operation() {
	case jetstream.KeyValuePut:
		var b blacklist.Block
		if json.Unmarshal(e.Value(), &b) != nil {
			n.log.Warn("cluster: bad entry ignored", "bucket", BucketBlocks, "key", e.Key())
			return
		}
		n.list.ApplyBlock(p, b)
	case jetstream.KeyValueDelete:
		n.list.ApplyRelease(p, "another node")
	}
	// A purge is an expiry, which every node applies by itself, or a block
	// being replaced by a longer one.
}

func (n *Node) applyListing(white bool, e jetstream.KeyValueEntry) {
	p, err := decode(e.Key())
	if err != nil {
		return
	}
	if e.Operation() != jetstream.KeyValuePut {
		n.list.ApplyListing(white, p, nil)
		return
	}
	var l blacklist.Listing
	if json.Unmarshal(e.Value(), &l) != nil {
		n.log.Warn("cluster: bad entry ignored", "bucket", e.Bucket(), "key", e.Key())
		return
	}
	n.list.ApplyListing(white, p, &l)
}

func (n *Node) applyNode(e jetstream.KeyValueEntry) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		delete(n.nodes, e.Key())
		return
	}
	var info NodeInfo
	if json.Unmarshal(e.Value(), &info) == nil {
		n.nodes[e.Key()] = info
	}
}

// Status is what a node knows of itself and the cluster, for the admin UI,
// /metrics and /healthz.
type Status struct {
	Node     string     `json:"node"`
	Embedded bool       `json:"embedded"`
	Ready    bool       `json:"ready"`   // the buckets are open
	Quorum   bool       `json:"quorum"`  // JetStream answers with a quorum behind it
	Current  bool       `json:"current"` // this node's copies of the buckets are up to date
	Routes   int        `json:"routes"`  // embedded: routes to other nodes' servers
	Queued   int        `json:"queued"`  // writes waiting for the cluster
	Dropped  uint64     `json:"dropped"` // writes dropped because the queue was full
	LastErr  string     `json:"last_error,omitempty"`
	Nodes    []NodeInfo `json:"nodes"` // every node seen in the last minute, this one included
	// Buckets are the entries of each bucket, as of the last heartbeat.
	Buckets map[string]uint64 `json:"buckets,omitempty"`
}

// Status returns the node's view of the cluster.
func (n *Node) Status() Status {
	s := Status{Node: n.cfg.Node, Embedded: n.ns != nil, Quorum: n.quorum(), Current: n.caughtUp()}
	if n.ns != nil {
		s.Routes = n.ns.NumRoutes()
	}
	n.mu.Lock()
	s.Ready, s.Queued, s.Dropped, s.LastErr = n.ready, len(n.ops)+len(n.counts), n.dropped, n.lastErr
	s.Buckets = maps.Clone(n.sizes)
	for _, info := range n.nodes {
		s.Nodes = append(s.Nodes, info)
	}
	n.mu.Unlock()
	slices.SortFunc(s.Nodes, func(a, b NodeInfo) int { return strings.Compare(a.Name, b.Name) })
	return s
}

// encode writes a network as a bucket key: ':' is not allowed in one.
func encode(p netip.Prefix) string { return strings.ReplaceAll(p.String(), ":", "_") }

func decode(key string) (netip.Prefix, error) {
	return netip.ParsePrefix(strings.ReplaceAll(key, "_", ":"))
}
