package cluster

import (
	"net/netip"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// TestExternalNATS runs two nodes against an existing NATS server (one
// nats-server from the module, JetStream on, its client port on loopback)
// instead of embedding one: cluster.nats.url.
func TestExternalNATS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a NATS server")
	}
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.5", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: t.TempDir(), NoSigs: true, ServerName: "external"})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Skip("NATS server not ready on 127.0.0.5")
	}
	ms := testCluster(t, 2)
	for _, m := range ms {
		m.cfg.Peers, m.cfg.Listen, m.cfg.Replicas = nil, "", 1
		m.cfg.TLS.Loaded, m.cfg.TLS.CAPool = nil, nil // a plain nats:// URL
		m.cfg.NATS.URL = ns.ClientURL()
		m.start(t)
		defer m.stop()
		if m.node.Status().Embedded {
			t.Fatal("embedded a server with cluster.nats.url set")
		}
	}
	a, b := ms[0], ms[1]
	eventually(t, "both joined", func() bool {
		return a.node.Status().Ready && b.node.Status().Ready && len(b.node.Status().Nodes) == 2
	})
	for i := range 6 {
		report(ms[i%2].list, "192.0.2.8")
	}
	eventually(t, "blocked on both", func() bool {
		return a.list.Blocked(netip.MustParseAddr("192.0.2.8")) && b.list.Blocked(netip.MustParseAddr("192.0.2.8"))
	})
	if err := b.list.AddManual(netip.MustParsePrefix("203.0.113.0/28"), "external"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a has b's entry", func() bool { return a.list.Blocked(netip.MustParseAddr("203.0.113.3")) })
	if ns.NumClients() < 2 {
		t.Errorf("%d clients on the external server", ns.NumClients())
	}
}
