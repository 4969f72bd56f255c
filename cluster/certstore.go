package cluster

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/nats-io/nats.go/jetstream"
)

// Buckets of the ACME certificates (tls.acme) of a cluster.
const (
	// BucketCerts holds certmagic's storage: account, keys, certificates,
	// challenge tokens. KEY is the storage key, each path segment base64url.
	BucketCerts = "gatehouse_certs"
	// BucketLocks holds certmagic's locks (one node obtains or renews a
	// certificate); an entry lives lockLease after its last renewal.
	BucketLocks = "gatehouse_locks"
)

// lockLease is how long a lock outlives its holder: the holder renews it
// every lockLease/3, so a node that dies holding it frees it within this.
const lockLease = 15 * time.Second

// CertStore is certmagic.Storage in the cluster's buckets, so that one
// node obtains and renews each certificate and every node loads it (and
// answers its challenges: certmagic keeps them in the storage too).
type CertStore struct {
	n *Node

	mu    sync.Mutex // guards the fields below
	certs jetstream.KeyValue
	locks jetstream.KeyValue
	held  map[string]*lease

	wg sync.WaitGroup // the lease renewers
}

// lease is a lock this node holds.
type lease struct {
	key  string
	rev  uint64
	stop chan struct{}
	done chan struct{}
}

var _ certmagic.Storage = (*CertStore)(nil)
var _ certmagic.TryLocker = (*CertStore)(nil)

// CertStorage returns the node's certmagic.Storage. Its calls wait for the
// cluster (or their context).
func (n *Node) CertStorage() *CertStore { return n.certs }

// wait ends the lease renewers; the Node's context is done.
func (s *CertStore) wait() { s.wg.Wait() }

// buckets opens the two buckets once the node has joined.
func (s *CertStore) buckets(ctx context.Context) (certs, locks jetstream.KeyValue, err error) {
	select {
	case <-s.n.opened:
	case <-ctx.Done():
		return nil, nil, fmt.Errorf("cluster not joined: %w", ctx.Err())
	case <-s.n.ctx.Done():
		return nil, nil, errors.New("cluster: node closed")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.certs != nil {
		return s.certs, s.locks, nil
	}
	mk := func(c jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
		c.Replicas, c.History, c.Storage = s.n.cfg.Replicas, 1, jetstream.FileStorage
		ctx, cancel := context.WithTimeout(ctx, opTimeout)
		defer cancel()
		return s.n.js.CreateOrUpdateKeyValue(ctx, c)
	}
	c, err := mk(jetstream.KeyValueConfig{Bucket: BucketCerts})
	if err != nil {
		return nil, nil, fmt.Errorf("bucket %s: %w", BucketCerts, err)
	}
	l, err := mk(jetstream.KeyValueConfig{Bucket: BucketLocks, TTL: lockLease})
	if err != nil {
		return nil, nil, fmt.Errorf("bucket %s: %w", BucketLocks, err)
	}
	s.certs, s.locks = c, l
	return c, l, nil
}

// certKey writes a storage key ("a/b/c") as a bucket key: certmagic's keys
// hold characters a bucket key may not ('@' of an e-mail address, ':' of
// a port), so each segment is base64url; '.' separates them, so that a
// prefix is a subject filter.
func certKey(key string) string {
	var b strings.Builder
	b.WriteString("k")
	for seg := range strings.SplitSeq(strings.Trim(key, "/"), "/") {
		b.WriteByte('.')
		b.WriteString(base64.RawURLEncoding.EncodeToString([]byte(seg)))
	}
	return b.String()
}

// storageKey is the inverse of certKey.
func storageKey(k string) (string, bool) {
	segs := strings.Split(k, ".")
	if len(segs) < 2 || segs[0] != "k" {
		return "", false
	}
	out := make([]string, 0, len(segs)-1)
	for _, s := range segs[1:] {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			return "", false
		}
		out = append(out, string(b))
	}
	return strings.Join(out, "/"), true
}

func notExist(key string) error { return fmt.Errorf("%s: %w", key, fs.ErrNotExist) }

// Store implements certmagic.Storage.
func (s *CertStore) Store(ctx context.Context, key string, value []byte) error {
	certs, _, err := s.buckets(ctx)
	if err != nil {
		return err
	}
	_, err = certs.Put(ctx, certKey(key), value)
	return err
}

// Load implements certmagic.Storage.
func (s *CertStore) Load(ctx context.Context, key string) ([]byte, error) {
	certs, _, err := s.buckets(ctx)
	if err != nil {
		return nil, err
	}
	e, err := certs.Get(ctx, certKey(key))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, notExist(key)
	}
	if err != nil {
		return nil, err
	}
	return e.Value(), nil
}

// Delete implements certmagic.Storage: key and everything under it.
func (s *CertStore) Delete(ctx context.Context, key string) error {
	certs, _, err := s.buckets(ctx)
	if err != nil {
		return err
	}
	keys, _ := s.List(ctx, key, true)
	for _, k := range append(keys, key) {
		if err := certs.Delete(ctx, certKey(k)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return err
		}
	}
	return nil
}

// Exists implements certmagic.Storage.
func (s *CertStore) Exists(ctx context.Context, key string) bool {
	_, err := s.Stat(ctx, key)
	return err == nil
}

// List implements certmagic.Storage: the keys under path, or with
// recursive false the names one level below it (files and directories).
func (s *CertStore) List(ctx context.Context, path string, recursive bool) ([]string, error) {
	certs, _, err := s.buckets(ctx)
	if err != nil {
		return nil, err
	}
	filter := "k.>"
	prefix := strings.Trim(path, "/")
	if prefix != "" {
		filter = certKey(prefix) + ".>"
	}
	kl, err := certs.ListKeysFiltered(ctx, filter)
	if err != nil {
		return nil, err
	}
	defer kl.Stop()
	var out []string
	for k := range kl.Keys() {
		key, ok := storageKey(k)
		if !ok {
			continue
		}
		if !recursive {
			rest := strings.TrimPrefix(strings.TrimPrefix(key, prefix), "/")
			first, _, _ := strings.Cut(rest, "/")
			key = strings.TrimPrefix(prefix+"/"+first, "/")
		}
		out = append(out, key)
	}
	if len(out) == 0 {
		return nil, notExist(path)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// Stat implements certmagic.Storage.
func (s *CertStore) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	certs, _, err := s.buckets(ctx)
	if err != nil {
		return certmagic.KeyInfo{}, err
	}
	e, err := certs.Get(ctx, certKey(key))
	switch {
	case err == nil:
		return certmagic.KeyInfo{Key: key, Modified: e.Created(), Size: int64(len(e.Value())), IsTerminal: true}, nil
	case !errors.Is(err, jetstream.ErrKeyNotFound):
		return certmagic.KeyInfo{}, err
	}
	if _, err := s.List(ctx, key, false); err != nil {
		return certmagic.KeyInfo{}, err
	}
	return certmagic.KeyInfo{Key: key, IsTerminal: false}, nil
}

// Lock implements certmagic.Locker: it waits until no other node holds
// name (or the holder's lease ran out).
func (s *CertStore) Lock(ctx context.Context, name string) error {
	for {
		ok, err := s.TryLock(ctx, name)
		if ok || ctx.Err() != nil {
			return err
		}
		// Held elsewhere, or the cluster did not answer: look again.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.n.ctx.Done():
			return errors.New("cluster: node closed")
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// TryLock implements certmagic.TryLocker.
func (s *CertStore) TryLock(ctx context.Context, name string) (bool, error) {
	_, locks, err := s.buckets(ctx)
	if err != nil {
		return false, err
	}
	key := certKey(name)
	s.mu.Lock()
	_, mine := s.held[key]
	s.mu.Unlock()
	if mine {
		return false, nil // held by this node: certmagic's callers wait like any other
	}
	octx, cancel := context.WithTimeout(ctx, opTimeout)
	rev, err := locks.Create(octx, key, []byte(s.n.cfg.Node))
	cancel()
	if errors.Is(err, jetstream.ErrKeyExists) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	l := &lease{key: key, rev: rev, stop: make(chan struct{}), done: make(chan struct{})}
	s.mu.Lock()
	if s.held == nil {
		s.held = make(map[string]*lease)
	}
	s.held[key] = l
	s.mu.Unlock()
	s.wg.Go(func() { s.renew(locks, l) })
	return true, nil
}

// renew keeps l alive until Unlock or the Node closes.
func (s *CertStore) renew(locks jetstream.KeyValue, l *lease) {
	defer close(l.done)
	t := time.NewTicker(lockLease / 3)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-s.n.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(s.n.ctx, opTimeout)
		rev, err := locks.Update(ctx, l.key, []byte(s.n.cfg.Node), l.rev)
		cancel()
		if err != nil {
			s.n.fail("cluster: certificate lock not renewed", fmt.Errorf("%s: %w", l.key, err))
			continue
		}
		s.mu.Lock()
		l.rev = rev
		s.mu.Unlock()
	}
}

// Unlock implements certmagic.Locker.
func (s *CertStore) Unlock(ctx context.Context, name string) error {
	key := certKey(name)
	s.mu.Lock()
	l := s.held[key]
	delete(s.held, key)
	s.mu.Unlock()
	if l == nil {
		return fmt.Errorf("cluster: unlock of %s, which this node does not hold", name)
	}
	close(l.stop)
	<-l.done
	_, locks, err := s.buckets(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	rev := l.rev
	s.mu.Unlock()
	err = locks.Delete(ctx, key, jetstream.LastRevision(rev))
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return nil // the lease ran out and another node holds it now
	}
	return err
}
