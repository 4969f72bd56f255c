package webui

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/cluster"
	"github.com/gatehouse-pbx/gatehouse/configs"
)

// clusterAppliance is an appliance whose blacklist is shared through a
// real cluster node (embedded NATS, alone: its own quorum), joined before
// it returns.
func clusterAppliance(t *testing.T) (*appliance, *cluster.Node) {
	t.Helper()
	var node *cluster.Node
	a := newApplianceWith(t, "", func(o *Options) {
		var err error
		node, err = cluster.Start(configs.Cluster{Enabled: true, Node: "dmz-a", Replicas: 1, StoreDir: filepath.Join(t.TempDir(), "nats")},
			o.Blacklist, cluster.Options{Version: "test", Address: "192.0.2.1:6222"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { node.Close() })
		o.Cluster = node
	})
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if st := node.Status(); st.Ready && len(st.Nodes) == 1 {
			return a, node
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node never joined: %+v", node.Status())
		}
	}
}

// The nodes page lists the cluster's nodes with their address, start,
// version, quorum and heartbeat; the blacklist page and API say which
// node made a block; /metrics has the per-node figures.
func TestNodesPage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an embedded NATS server")
	}
	a, _ := clusterAppliance(t)
	c, _ := a.login("127.0.0.1")
	code, body, _ := do(t, c, "GET", a.base+"/nodes", "", nil)
	if code != http.StatusOK {
		t.Fatalf("/nodes: %d %s", code, body)
	}
	for _, want := range []string{`id="nav-nodes"`, `data-node="dmz-a"`, "(this node)", "192.0.2.1:6222",
		"<td>test</td>", `<td class="quorum">yes</td>`, `<td class="current">current</td>`, "joined, with a quorum"} {
		if !strings.Contains(body, want) {
			t.Errorf("/nodes lacks %q:\n%s", want, body)
		}
	}

	// Four forbidden requests: blocked by this node, which the pages say.
	for range 4 {
		a.httpGet("127.0.0.9", "/admin")
	}
	if st := a.httpGet("127.0.0.9", "/PBX0/MY"); st != 0 {
		t.Fatalf("127.0.0.9 not blocked: %d", st)
	}
	_, body, _ = do(t, c, "GET", a.base+"/blacklist", "", nil)
	if !strings.Contains(body, `<div class="meta origin">by node dmz-a</div>`) {
		t.Errorf("/blacklist does not say which node blocked:\n%s", body)
	}
	if _, js := a.basic("GET", "/api/blacklist", "", nil); !strings.Contains(js, `"node": "dmz-a"`) {
		t.Errorf("/api/blacklist lacks the node: %s", js)
	}
	_, m := a.basic("GET", "/metrics", "", nil)
	for _, want := range []string{`gatehouse_cluster_node_quorum{node="dmz-a"} 1`, `gatehouse_cluster_node_up_seconds{node="dmz-a"}`, "gatehouse_cluster_nodes 1", "gatehouse_cluster_current 1",
		`gatehouse_cluster_bucket_entries{bucket="gatehouse_blocks"}`} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// Without a cluster section there is no Nodes entry in the menu and the
// page says why it is empty.
func TestNodesPageAlone(t *testing.T) {
	a := newAppliance(t, "")
	c, _ := a.login("127.0.0.1")
	code, body, _ := do(t, c, "GET", a.base+"/nodes", "", nil)
	if code != http.StatusNotFound || !strings.Contains(body, "no cluster section") || strings.Contains(body, `id="nav-nodes"`) {
		t.Errorf("/nodes alone: %d %s", code, body)
	}
}
