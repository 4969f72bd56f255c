package acme_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/blacklist"
	"github.com/gatehouse-pbx/gatehouse/cluster"
	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
	"github.com/gatehouse-pbx/gatehouse/proxy/acme"
)

// twoNodes runs a cluster of two nodes (embedded NATS on 127.0.0.2 and
// 127.0.0.3, one replica) and waits until both have joined.
func twoNodes(t *testing.T) []*cluster.Node {
	t.Helper()
	ca := testpki.NewCA(t, "cluster")
	var cfgs []configs.Cluster
	var addrs []string
	for i := range 2 {
		ip := fmt.Sprintf("127.0.0.%d", i+2)
		l, err := net.Listen("tcp", ip+":0")
		if err != nil {
			t.Skipf("cannot listen on %s: %v", ip, err)
		}
		addrs = append(addrs, l.Addr().String())
		l.Close()
		name := fmt.Sprintf("node%c", 'a'+i)
		cert := ca.Node(name, ip).TLS
		cfgs = append(cfgs, configs.Cluster{Enabled: true, Node: name, Listen: addrs[i], Replicas: 1,
			StoreDir: filepath.Join(t.TempDir(), "nats"), TLS: configs.ClusterTLS{Loaded: &cert, CAPool: ca.Pool()}})
	}
	cfgs[0].Peers, cfgs[1].Peers = addrs[1:], addrs[:1]
	var nodes []*cluster.Node
	for _, c := range cfgs {
		l, err := blacklist.New(configs.Blacklist{Threshold: 5}, blacklist.Options{})
		if err != nil {
			t.Fatal(err)
		}
		n, err := cluster.Start(c, l, cluster.Options{Version: "test"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close(); l.Close() })
		nodes = append(nodes, n)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if nodes[0].Status().Ready && nodes[1].Status().Ready {
			return nodes
		}
		if time.Now().After(deadline) {
			t.Fatalf("the two nodes never joined: %+v %+v", nodes[0].Status(), nodes[1].Status())
		}
	}
}

// Two nodes of a cluster manage the same name with their certificates in
// the cluster's buckets: one obtains it (Pebble sees one order), the other
// waits for the lock and loads it, and both serve it. Pebble validates on
// node a (TLS-ALPN-01 on 127.0.0.2), whichever node asked: the challenge
// is in the shared storage too.
func TestClusterStorage(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Pebble and two cluster nodes")
	}
	p := startPebble(t)
	nodes := twoNodes(t)
	p.ResolveTo(t, "acme.example.com", "127.0.0.2")
	var addrs []string
	var ms []*acme.Manager
	for i, n := range nodes {
		ip := fmt.Sprintf("127.0.0.%d", i+2)
		srv, m, _ := gatehouse(t, p, fmt.Sprintf("https: \"%s:%d\"", ip, p.TLSPort), "",
			acme.Options{ListenHost: ip, TLSPort: p.TLSPort, Storage: n.CertStorage()})
		addrs = append(addrs, srv.Addr("https").String())
		ms = append(ms, m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(ms))
	for i, m := range ms {
		wg.Go(func() { errs[i] = m.ManageSync(ctx, []string{"acme.example.com"}) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
	var serials []string
	for _, addr := range addrs {
		issuer, serial := served(t, addr, "acme.example.com")
		if !strings.Contains(issuer, "Pebble") {
			t.Fatalf("%s serves a certificate of %q", addr, issuer)
		}
		serials = append(serials, serial)
	}
	if serials[0] != serials[1] {
		t.Errorf("the nodes serve two certificates: %q", serials)
	}
	orders := regexp.MustCompile(`There are now (\d+) orders in the db`).FindAllStringSubmatch(p.Log.String(), -1)
	if len(orders) != 1 {
		t.Errorf("Pebble saw %d orders, want 1:\n%s", len(orders), p.Log)
	}
	// A third manager on node b, as after a restart, loads it and orders nothing.
	_, m, _ := gatehouse(t, p, fmt.Sprintf("https: \"127.0.0.4:%d\"", p.TLSPort), "",
		acme.Options{ListenHost: "127.0.0.4", TLSPort: p.TLSPort, Storage: nodes[1].CertStorage()})
	if err := m.ManageSync(ctx, []string{"acme.example.com"}); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(p.Log.String(), "orders in the db"); n != 1 {
		t.Errorf("after a restart Pebble saw %d orders, want 1", n)
	}
}
