package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
)

// natsd is one nats-server process of an external NATS cluster.
type natsd struct {
	name, client string
	cmd          *exec.Cmd
	log          *testpeer.Log
	done         chan error
}

// TestClusterExternalNATS runs three gatehouse nodes on an existing NATS
// cluster (cluster.nats.url): three nats-server processes built from the
// module in go.mod (Debian's is too old for per-key TTL), JetStream with
// three replicas. A block made on one node is refused on the others; with
// one nats-server killed, the nodes go on.
func TestClusterExternalNATS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds nats-server and runs six processes")
	}
	dir := t.TempDir()
	prog := filepath.Join(dir, "nats-server")
	if out, err := exec.Command("go", "build", "-o", prog, "github.com/nats-io/nats-server/v2").CombinedOutput(); err != nil {
		t.Fatalf("building nats-server from the module: %v\n%s", err, out)
	}
	var servers []*natsd
	var routes, urls []string
	for i := range 3 {
		ip := fmt.Sprintf("127.0.0.%d", 21+i)
		servers = append(servers, &natsd{name: fmt.Sprintf("ns-%d", i+1), client: freeAddrOn(t, ip)})
		routes = append(routes, "nats-route://"+freeAddrOn(t, ip))
		urls = append(urls, "nats://"+servers[i].client)
	}
	for i, s := range servers {
		others := append(append([]string{}, routes[:i]...), routes[i+1:]...)
		conf := fmt.Sprintf(`server_name: %s
listen: %q
jetstream { store_dir: %q }
cluster { name: external, listen: %q, routes: [%s] }
`, s.name, s.client, filepath.Join(dir, s.name), strings.TrimPrefix(routes[i], "nats-route://"), strings.Join(others, ", "))
		path := filepath.Join(dir, s.name+".conf")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		s.log, s.done = &testpeer.Log{}, make(chan error, 1)
		s.cmd = exec.Command(prog, "-c", path)
		s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
		if err := s.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { s.done <- s.cmd.Wait() }()
		t.Cleanup(func() {
			s.cmd.Process.Kill()
			<-s.done
			if t.Failed() {
				t.Logf("%s:\n%s", s.name, s.log)
			}
		})
	}
	gc := newCluster(t, clusterOptions{natsURL: strings.Join(urls, ","), extra: "  replicas: 3\n"})
	gc.startAll()
	a, b, c := gc.nodes[0], gc.nodes[1], gc.nodes[2]
	if st := gc.adminGet(a, "/api/cluster"); !strings.Contains(st, `"embedded": false`) {
		t.Errorf("node a embeds a NATS server with cluster.nats.url set: %s", st)
	}
	gc.bruteForce("127.0.0.50", a)
	gc.refused("block made on a", "127.0.0.50", b, c)
	gc.adminPost(b, "/api/blacklist", "127.0.0.51")
	gc.refused("manual entry made on b", "127.0.0.51", a, c)

	// One nats-server dies: the nodes connected to it reconnect to the
	// others, the streams elect new leaders, and blocks still spread.
	servers[0].cmd.Process.Signal(syscall.SIGKILL)
	<-servers[0].done
	servers[0].done <- nil // for the cleanup
	start := time.Now()
	gc.bruteForce("127.0.0.52", c)
	gc.refused("block made on c with ns-1 dead", "127.0.0.52", a, b)
	gc.adminPost(a, "/api/blacklist", "127.0.0.53")
	gc.refused("manual entry made on a with ns-1 dead", "127.0.0.53", b, c)
	t.Logf("with ns-1 killed: both spread within %v", time.Since(start))
	for _, ip := range []string{"127.0.0.50", "127.0.0.51"} {
		gc.refused("earlier entries with ns-1 dead", ip, a, b, c)
	}
	gc.served("whitelisted", "127.0.0.7")
}
