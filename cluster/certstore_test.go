package cluster

import (
	"context"
	"errors"
	"io/fs"
	"slices"
	"testing"
	"time"
)

// CertStore keeps certmagic's keys in the cluster: what one node stores
// another loads, lists (a level or all below) and stats; a lock held by
// one node keeps the others waiting, and when its holder dies without
// unlocking, the lease runs out and another node gets it.
func TestCertStore(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three NATS servers")
	}
	ms := testCluster(t, 3)
	for _, m := range ms {
		m.start(t)
		defer m.stop()
	}
	a, b := ms[0].node.CertStorage(), ms[1].node.CertStorage()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	keys := []string{
		"certificates/acme-127.0.0.1-14000-dir/hq.example.com/hq.example.com.crt",
		"certificates/acme-127.0.0.1-14000-dir/hq.example.com/hq.example.com.key",
		"acme/127.0.0.1-14000-dir/users/pki@example.com/pki.json",
	}
	for _, k := range keys {
		if err := a.Store(ctx, k, []byte("value of "+k)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := b.Load(ctx, keys[2])
	if err != nil || string(got) != "value of "+keys[2] {
		t.Fatalf("b loads %q, %v", got, err)
	}
	if _, err := b.Load(ctx, "certificates/none"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing key: %v, want fs.ErrNotExist", err)
	}
	level, err := b.List(ctx, "certificates", false)
	if err != nil || !slices.Equal(level, []string{"certificates/acme-127.0.0.1-14000-dir"}) {
		t.Errorf("List one level: %q, %v", level, err)
	}
	all, err := b.List(ctx, "certificates", true)
	if err != nil || !slices.Equal(all, keys[:2]) {
		t.Errorf("List recursive: %q, %v", all, err)
	}
	if st, err := b.Stat(ctx, "certificates/acme-127.0.0.1-14000-dir"); err != nil || st.IsTerminal {
		t.Errorf("Stat of a directory: %+v, %v", st, err)
	}
	if st, err := b.Stat(ctx, keys[0]); err != nil || !st.IsTerminal || st.Size != int64(len("value of "+keys[0])) {
		t.Errorf("Stat of a key: %+v, %v", st, err)
	}
	if err := b.Delete(ctx, "certificates/acme-127.0.0.1-14000-dir/hq.example.com"); err != nil {
		t.Fatal(err)
	}
	if a.Exists(ctx, keys[0]) || !a.Exists(ctx, keys[2]) {
		t.Error("Delete of a directory: wrong keys left")
	}

	// a holds the lock; b waits.
	if err := a.Lock(ctx, "issue_cert_hq.example.com"); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.TryLock(ctx, "issue_cert_hq.example.com"); ok || err != nil {
		t.Fatalf("b got a's lock: %v %v", ok, err)
	}
	// a renews it past its lease.
	time.Sleep(lockLease + lockLease/2)
	if ok, _ := b.TryLock(ctx, "issue_cert_hq.example.com"); ok {
		t.Fatal("a's lease ran out while a held and renewed it")
	}
	// a dies holding it: b gets it when the lease runs out.
	ms[0].stop()
	start := time.Now()
	// Its own budget: the lease (15 s) plus, when a led the locks bucket,
	// NATS's election of another leader (seconds; more on a loaded machine).
	lctx, lcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer lcancel()
	if err := b.Lock(lctx, "issue_cert_hq.example.com"); err != nil {
		t.Fatal(err)
	}
	t.Logf("b got the lock %v after a died", time.Since(start))
	if err := b.Unlock(lctx, "issue_cert_hq.example.com"); err != nil {
		t.Error(err)
	}
}
