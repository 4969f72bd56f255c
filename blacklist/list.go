package blacklist

import (
	"container/heap"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
)

// Defaults for the zero values of configs.Blacklist, as in the example
// configuration.
const (
	DefaultThreshold  = 20
	DefaultExpiration = 10 * time.Minute
	DefaultIPv6Prefix = 64
	DefaultMaxTracked = 100000
)

// Options are the parts of a List that do not come from the configuration.
type Options struct {
	// Clock tells the time; nil is time.Now. Tests inject their own.
	Clock func() time.Time
	// Logger receives one line per block and release; nil is slog.Default().
	Logger *slog.Logger
}

// List is the fraud blacklist. Its methods are safe for concurrent use.
type List struct {
	clock func() time.Time
	epoch time.Time // instant 0
	log   *slog.Logger

	// The accept path reads these without List.mu.
	rules    atomic.Pointer[rules]
	index    blockIndex
	rejected atomic.Uint64
	// aggregated is set once a range was folded: Blocked then also looks
	// up the range of a client, a second lookup nobody pays before.
	aggregated atomic.Bool

	mu          sync.Mutex // guards the fields below
	cfg         configs.Blacklist
	records     map[netip.Prefix]*record
	groups      map[netip.Prefix][]*record // client records by range (aggregate.go)
	onBlock     []func(netip.Prefix)
	counters    counterList
	blocks      blockHeap
	cfgManual   map[netip.Prefix]listed // from the configuration: read-only at run time
	rtManual    map[netip.Prefix]listed // added at run time
	cfgWhite    map[netip.Prefix]listed
	rtWhite     map[netip.Prefix]listed
	gen         uint64   // bumped by every change the state file holds
	nblocks     uint64   // automatic blocks since start
	nevicted    uint64   // counters forgotten at the cap
	naggregated uint64   // ranges folded at the cap
	untracked   uint64   // requests not counted: the list was full of blocks
	capWarnAt   instant  // when the cap may be reported again
	aggWarnAt   instant  // when folding may be reported again
	pending     []func() // log lines, written by unlock after List.mu is released
	shared      Shared   // the cluster's store (shared.go); nil when alone
	node        string   // this node's name in the cluster

	saveMu         sync.Mutex // serializes writing the state file; guards the fields below
	savedGen       uint64
	savedRejected  uint64  // List.rejected when the file was written
	attemptsSaveAt instant // when a change of attempts alone may be written
	saveFailing    bool
	saveLogAt      instant // when a failing save may be logged again

	life    sync.Mutex // guards the fields below
	stop    chan struct{}
	done    chan struct{} // closed when the background goroutine returns; nil before Start
	running bool
	closed  bool
}

// listed is a manual or whitelist entry. attempts counts the connections a
// manual entry refused (nil for whitelist entries); the pointer is shared by
// every copy of the value and by the rules built from it.
type listed struct {
	note     string
	added    instant
	attempts *atomic.Uint64
}

// newListed makes a manual entry with a fresh counter of attempts.
func newListed(note string, added instant, attempts uint64) listed {
	v := listed{note: note, added: added, attempts: new(atomic.Uint64)}
	v.attempts.Store(attempts)
	return v
}

// New makes a List for cfg, loading cfg.State when it is set. Zero values in
// cfg take the Default constants. An unreadable state file is an error; a
// corrupt one is renamed aside and logged, and the List starts without it.
// Call Start to run the expiry sweep and persistence, and Close at the end.
func New(cfg configs.Blacklist, opts Options) (*List, error) {
	cfg, err := effective(cfg)
	if err != nil {
		return nil, err
	}
	l := &List{
		clock:    opts.Clock,
		log:      opts.Logger,
		records:  make(map[netip.Prefix]*record),
		groups:   make(map[netip.Prefix][]*record),
		rtManual: make(map[netip.Prefix]listed),
		rtWhite:  make(map[netip.Prefix]listed),
		stop:     make(chan struct{}),
	}
	if l.clock == nil {
		l.clock = time.Now
	}
	if l.log == nil {
		l.log = slog.Default()
	}
	l.epoch = l.clock()
	l.mu.Lock()
	defer l.unlock()
	l.applyLocked(cfg, l.now())
	if cfg.State != "" {
		if err := l.loadLocked(cfg.State); err != nil {
			return nil, err
		}
		l.savedGen, l.savedRejected = l.gen, l.rejected.Load() // what was just loaded is what the file holds
	}
	return l, nil
}

// effective validates cfg and fills in the defaults.
func effective(cfg configs.Blacklist) (configs.Blacklist, error) {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf("blacklist: "+format, args...))
		}
	}
	check(cfg.Threshold >= 0, "threshold %d is negative", cfg.Threshold)
	check(cfg.Expiration >= 0, "expiration %v is negative", cfg.Expiration)
	check(cfg.IPv6Prefix >= 0 && cfg.IPv6Prefix <= 128, "ipv6_prefix %d is not between 1 and 128", cfg.IPv6Prefix)
	check(cfg.MaxTracked >= 0, "max_tracked %d is negative", cfg.MaxTracked)
	for i, p := range cfg.Whitelist {
		check(p.IsValid(), "whitelist[%d] is not a valid address or network", i)
	}
	for i, p := range cfg.Blacklist {
		check(p.IsValid(), "blacklist[%d] is not a valid address or network", i)
	}
	if cfg.Threshold == 0 {
		cfg.Threshold = DefaultThreshold
	}
	if cfg.Expiration == 0 {
		cfg.Expiration = DefaultExpiration
	}
	if cfg.IPv6Prefix == 0 {
		cfg.IPv6Prefix = DefaultIPv6Prefix
	}
	if cfg.MaxTracked == 0 {
		cfg.MaxTracked = DefaultMaxTracked
	}
	return cfg, errors.Join(errs...)
}

// Reconfigure applies a reloaded configuration and keeps every run-time
// entry and counter. Automatic blocks keep the expiry they were given; a
// changed ipv6_prefix merges IPv6 blocks into the wider networks (or releases
// them when it got longer) and restarts IPv6 counting; a changed state path is
// written at the next save. An invalid configuration is logged and ignored.
func (l *List) Reconfigure(cfg configs.Blacklist) {
	cfg, err := effective(cfg)
	if err != nil {
		l.log.Error("blacklist configuration not applied", "err", err)
		return
	}
	l.mu.Lock()
	defer l.unlock()
	l.applyLocked(cfg, l.now())
}

func (l *List) applyLocked(cfg configs.Blacklist, now instant) {
	old, oldWhite := l.cfg, l.cfgWhite
	l.cfg = cfg
	l.cfgManual = configEntries(cfg.Blacklist, l.cfgManual, now)
	l.cfgWhite = configEntries(cfg.Whitelist, nil, now)
	l.rebuildLocked(now)
	// What a reload may block: its manual entries, and what a whitelist
	// entry it dropped was covering.
	for p := range l.cfgManual {
		l.notifyLocked(p)
	}
	for p := range oldWhite {
		if _, ok := l.cfgWhite[p]; !ok {
			l.notifyLocked(p)
		}
	}
	if old.IPv6Prefix != 0 && old.IPv6Prefix != cfg.IPv6Prefix {
		l.rekeyLocked(now)
	}
	if old.Threshold != 0 && old.Threshold != cfg.Threshold {
		for _, r := range l.records {
			r.hits.resize(cfg.Threshold + 1)
		}
	}
	for len(l.records) > cfg.MaxTracked && l.makeRoomLocked(now) {
	}
	if old.State != cfg.State {
		l.gen++ // write the new file at the next save
	}
}

// configEntries makes the entries of a configuration list. An entry the
// previous configuration had (in old) keeps when it began and its attempts.
func configEntries(ps []configs.Prefix, old map[netip.Prefix]listed, now instant) map[netip.Prefix]listed {
	m := make(map[netip.Prefix]listed, len(ps))
	for _, p := range ps {
		p := normalize(p.Prefix)
		if v, ok := old[p]; ok {
			m[p] = v
			continue
		}
		m[p] = newListed("configuration", now, 0)
	}
	return m
}

// normalize gives a network the form client addresses are compared in:
// unmapped, without host bits.
func normalize(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked()
}

// rebuildLocked publishes new rules after a change of the whitelist, the
// manual entries or the key length, and releases the automatic blocks the
// whitelist now covers.
func (l *List) rebuildLocked(now instant) {
	r := &rules{
		white:  newPrefixSet(l.cfgWhite, l.rtWhite),
		manual: newPrefixSet(l.cfgManual, l.rtManual),
		v6bits: l.cfg.IPv6Prefix,
	}
	l.rules.Store(r)
	for _, rec := range append(blockHeap(nil), l.blocks...) {
		if p, ok := r.white.covers(rec.key); ok {
			l.releaseLocked(rec, now, "whitelisted by "+p.String())
		}
	}
}

// rekeyLocked moves IPv6 records to the current key length.
func (l *List) rekeyLocked(now instant) {
	bits := l.cfg.IPv6Prefix
	var moved []*record
	for key, rec := range l.records {
		if key.Addr().Is4() || key.Bits() == bits || rec.agg {
			continue
		}
		if !rec.blocked() || key.Bits() < bits {
			if rec.blocked() {
				l.releaseLocked(rec, now, fmt.Sprintf("ipv6_prefix is now /%d", bits))
			}
			l.dropLocked(rec)
			continue
		}
		l.index.delete(key)
		heap.Remove(&l.blocks, rec.heapIdx)
		l.forgetLocked(rec)
		moved = append(moved, rec)
	}
	for _, rec := range moved {
		rec.key, _ = rec.key.Addr().Prefix(bits)
		l.addBlockLocked(rec)
	}
}

// addBlockLocked adds rec, an automatic block from the state file or from
// rekeying, merging it into the record already kept for its key.
func (l *List) addBlockLocked(rec *record) {
	rec.heapIdx = -1
	dst := l.records[rec.key]
	switch {
	case dst == nil:
		l.putLocked(rec)
		if rec.agg {
			l.aggregated.Store(true)
		}
		heap.Push(&l.blocks, rec)
		l.index.set(rec.key, rec)
		return
	case !dst.blocked():
		l.counters.remove(dst)
		dst.expires, dst.since = rec.expires, rec.since
		dst.attempts.Store(0) // a counter's, from a block that ended
		heap.Push(&l.blocks, dst)
	case rec.expires > dst.expires:
		dst.expires = rec.expires
		heap.Fix(&l.blocks, dst.heapIdx)
	}
	dst.since = min(dst.since, rec.since)
	dst.absorb(rec)
	l.index.set(dst.key, dst)
}

// Blocked reports whether connections and packets from ip are to be refused.
// It is called for every accepted connection and every STUN/TURN packet: it
// does not allocate and takes no lock that Report holds. Each true answer
// counts as a rejection at accept, and as an attempt while blocked of the
// entry that blocks ip (one atomic add).
func (l *List) Blocked(ip netip.Addr) bool {
	hits, blocked := l.blockedBy(ip)
	if !blocked {
		return false
	}
	l.rejected.Add(1)
	if hits != nil {
		hits.Add(1)
	}
	return true
}

// Refuses is Blocked without counting: for a check that is no attempt of the
// client's, such as which open connections a new block closes.
func (l *List) Refuses(ip netip.Addr) bool {
	_, blocked := l.blockedBy(ip)
	return blocked
}

// blockedBy reports whether ip is refused now and the counter of attempts of
// the entry refusing it.
func (l *List) blockedBy(ip netip.Addr) (*atomic.Uint64, bool) {
	if !ip.IsValid() {
		return nil, false
	}
	ip = ip.Unmap()
	r := l.rules.Load()
	_, hits, blocked := r.manual.lookup(ip, 128)
	if !blocked {
		key := r.key(ip)
		e, ok := l.index.lookup(key)
		if !ok && l.aggregated.Load() {
			if a, wide := aggregateKey(key); wide {
				e, ok = l.index.lookup(a)
			}
		}
		blocked, hits = ok && l.now() < e.until, e.hits
	}
	if !blocked || r.white.contains(ip) {
		return nil, false
	}
	return hits, true
}

// Report records a suspicious request and blocks its client when it is one
// more than the threshold within the Window. Whitelisted clients and clients
// under a manual entry are recorded for display only; a blocked client's
// requests do not extend its block. Counting uses the List's clock; ev.Time
// only dates the request in Entry.Reasons.
func (l *List) Report(ev Event) {
	ip := ev.Client.Unmap()
	if !ip.IsValid() {
		return
	}
	l.mu.Lock()
	defer l.unlock()
	now := l.now()
	at := now
	if !ev.Time.IsZero() {
		at = l.instant(ev.Time)
	}
	l.expireLocked(now)
	r := l.rules.Load()
	key := r.key(ip)
	rec := l.records[key]
	if rec == nil {
		if a, ok := aggregateKey(key); ok {
			rec = l.records[a] // the range was folded: it counts as one
		}
	}
	if rec == nil {
		if rec = l.trackLocked(key, now); rec == nil {
			l.untracked++
			return
		}
	}
	rec.note(ev, at, now)
	if rec.blocked() {
		rec.attempts.Add(1) // a request refused after the block began
		l.gen++             // the state file holds its counts
		return
	}
	if _, hits, ok := r.manual.lookup(ip, 128); ok && hits != nil && !r.white.contains(ip) {
		hits.Add(1)
	}
	rec.hits.add(now, l.cfg.Threshold+1)
	if n := l.countLocked(rec, now); n > l.cfg.Threshold && !r.white.contains(ip) && !r.manual.contains(ip) {
		l.blockLocked(rec, now, n) // the other nodes hear of the block, not of the count
		return
	}
	l.shareCountLocked(rec, now)
	l.counters.moveToFront(rec)
}

// trackLocked makes the record for a new client. At the cap it makes room
// without dropping a block: when the client's range already has a record,
// the range is folded and the client counts on the aggregate; otherwise
// another range is folded, or an idle lone counter forgotten. It returns
// nil when the list holds only blocks that cannot be folded.
func (l *List) trackLocked(key netip.Prefix, now instant) *record {
	if len(l.records) >= l.cfg.MaxTracked {
		if now >= l.capWarnAt {
			l.capWarnAt = now + instant(time.Minute)
			n := l.cfg.MaxTracked
			l.pending = append(l.pending, func() {
				l.log.Warn("blacklist full: aggregating clients by range; active blocks are kept", "max_tracked", n)
			})
		}
		if a, ok := aggregateKey(key); ok && len(l.groups[a]) > 0 {
			return l.foldLocked(a, now)
		}
		if !l.makeRoomLocked(now) {
			return nil
		}
		// key may be a range (another node's block or count of it), and
		// making room may have folded that very range: its record is the
		// one, not a second under the same key.
		if rec := l.records[key]; rec != nil {
			return rec
		}
	}
	rec := &record{key: key, first: now, touched: now, heapIdx: -1}
	l.putLocked(rec)
	l.counters.pushFront(rec)
	return rec
}

func (l *List) blockLocked(rec *record, now instant, count int) {
	l.counters.remove(rec)
	rec.expires = now + instant(l.cfg.Expiration)
	rec.since = now
	rec.attempts.Store(0)
	rec.by = l.node
	heap.Push(&l.blocks, rec)
	l.index.set(rec.key, rec)
	l.nblocks++
	l.gen++
	client, why, until, agg := display(rec.key), summary(rec.reasons), l.wall(rec.expires), rec.agg
	key, b := rec.key, Block{Until: until, Count: count, Reason: why, Node: l.node}
	l.shareLocked(func(s Shared) { s.Blocked(key, b) })
	l.pending = append(l.pending, func() {
		if agg {
			l.log.Info("client blocked", "client", client, "count", count, "reason", why, "until", until, "aggregated", true)
			return
		}
		l.log.Info("client blocked", "client", client, "count", count, "reason", why, "until", until)
	})
	l.notifyLocked(rec.key)
}

// releaseLocked ends rec's automatic block; rec becomes a counter with an
// empty window.
func (l *List) releaseLocked(rec *record, now instant, why string) {
	heap.Remove(&l.blocks, rec.heapIdx)
	l.index.delete(rec.key)
	rec.expires, rec.since = 0, 0
	rec.attempts.Store(0)
	rec.hits = window{}
	rec.peers, rec.by = nil, ""
	rec.touched = now
	l.counters.pushFront(rec)
	l.gen++
	client := display(rec.key)
	l.pending = append(l.pending, func() {
		l.log.Info("client released", "client", client, "reason", why)
	})
}

// dropLocked forgets a record without a log line.
func (l *List) dropLocked(rec *record) {
	if rec.blocked() {
		heap.Remove(&l.blocks, rec.heapIdx)
		l.index.delete(rec.key)
		l.gen++
	} else {
		l.counters.remove(rec)
	}
	l.forgetLocked(rec)
}

// expireLocked releases the blocks that have ended.
func (l *List) expireLocked(now instant) {
	for len(l.blocks) > 0 && l.blocks[0].expires <= now {
		l.releaseLocked(l.blocks[0], now, "expired")
	}
}

// sweepLocked releases ended blocks and forgets idle counters.
func (l *List) sweepLocked(now instant) {
	l.expireLocked(now)
	idle := instant(max(Window, l.cfg.Expiration))
	for rec := l.counters.back; rec != nil && now-rec.touched >= idle; rec = l.counters.back {
		l.dropLocked(rec)
	}
}

// unlock releases l.mu, then writes the log lines queued under it, so that
// a slow log never holds up Report.
func (l *List) unlock() {
	p := l.pending
	l.pending = nil
	l.mu.Unlock()
	for _, f := range p {
		f()
	}
}

func (l *List) now() instant { return l.instant(l.clock()) }

func (l *List) instant(t time.Time) instant { return instant(t.Sub(l.epoch)) }

// wall turns an instant back into a time, without a monotonic reading.
func (l *List) wall(i instant) time.Time {
	return l.epoch.Add(time.Duration(i)).Round(0)
}

// display writes a client key as people expect: an IPv4 address without /32.
func display(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// summary describes the latest reason, e.g. "sips example.com: unknown service".
func summary(rs []reason) string {
	if len(rs) == 0 {
		return ""
	}
	return rs[len(rs)-1].export().String()
}

// Start runs the background goroutine: it releases expired blocks (and logs
// them), forgets idle counters and writes the state file when it changed,
// once a second. Close stops it.
func (l *List) Start() {
	l.life.Lock()
	defer l.life.Unlock()
	if l.running || l.closed {
		return
	}
	l.running = true
	l.done = make(chan struct{})
	go l.run(l.stop, l.done)
}

func (l *List) run(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			l.tick()
		}
	}
}

// tick is one round of the background goroutine.
func (l *List) tick() {
	l.mu.Lock()
	l.sweepLocked(l.now())
	l.unlock()
	err := l.save(false)
	switch report, recovered := l.noteSave(err, l.now()); {
	case report:
		l.log.Error("blacklist state not saved", "err", err)
	case recovered:
		l.log.Info("blacklist state saved again", "file", l.statePath())
	}
}

// noteSave records the outcome of a save and says whether to log it: a
// failing disk is reported when it starts failing and once a minute after,
// not every second.
func (l *List) noteSave(err error, now instant) (report, recovered bool) {
	l.saveMu.Lock()
	defer l.saveMu.Unlock()
	if err == nil {
		recovered, l.saveFailing = l.saveFailing, false
		return false, recovered
	}
	if !l.saveFailing || now >= l.saveLogAt {
		l.saveLogAt = now + instant(time.Minute)
		report = true
	}
	l.saveFailing = true
	return report, false
}

func (l *List) statePath() string {
	l.mu.Lock()
	defer l.unlock()
	return l.cfg.State
}

// Close stops the background goroutine, waits for it and writes the state
// file a last time. The List still answers afterwards, in memory only.
func (l *List) Close() error {
	l.life.Lock()
	if l.closed {
		l.life.Unlock()
		return nil
	}
	l.closed = true
	close(l.stop)
	done := l.done
	l.life.Unlock()
	if done != nil {
		<-done
	}
	l.mu.Lock()
	l.sweepLocked(l.now())
	l.unlock()
	return l.save(true)
}

// Stats are the List's counters for metrics.
type Stats struct {
	Blocks           uint64 `json:"blocks"`             // automatic blocks since start
	RejectedAtAccept uint64 `json:"rejected_at_accept"` // connections and packets refused by Blocked
	Evicted          uint64 `json:"evicted"`            // idle lone counters forgotten because max_tracked was reached
	Aggregated       uint64 `json:"aggregated"`         // ranges folded into one record because max_tracked was reached
	Untracked        uint64 `json:"untracked"`          // requests not counted: max_tracked was full of blocks
	ActiveBlocked    int    `json:"active_blocked"`     // automatic blocks in force plus manual entries
	Tracked          int    `json:"tracked"`            // clients with a record: counters and automatic blocks
	Whitelisted      int    `json:"whitelisted"`        // whitelist entries, from the configuration and run time
}

// Stats returns the current counters.
func (l *List) Stats() Stats {
	l.mu.Lock()
	defer l.unlock()
	l.expireLocked(l.now())
	manual := len(l.cfgManual)
	for p := range l.rtManual {
		if _, dup := l.cfgManual[p]; !dup {
			manual++
		}
	}
	white := len(l.cfgWhite)
	for p := range l.rtWhite {
		if _, dup := l.cfgWhite[p]; !dup {
			white++
		}
	}
	return Stats{
		Blocks:           l.nblocks,
		RejectedAtAccept: l.rejected.Load(),
		Evicted:          l.nevicted,
		Aggregated:       l.naggregated,
		Untracked:        l.untracked,
		ActiveBlocked:    len(l.blocks) + manual,
		Tracked:          len(l.records),
		Whitelisted:      white,
	}
}
