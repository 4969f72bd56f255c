package configs_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/gatehouse-pbx/gatehouse/configs"
)

// TestClusterExample loads the main example with the cluster contract
// merged into it, and checks every key lands in its field.
func TestClusterExample(t *testing.T) {
	_, fx := loadExample(t)
	main, err := os.ReadFile("testdata/gatehouse.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := os.ReadFile("testdata/cluster.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	yaml := strings.NewReplacer(
		"/etc/gatehouse/tls/example.com.crt", fx.cert,
		"/etc/gatehouse/tls/example.com.key", fx.key,
		"/etc/gatehouse/tls/phones-ca.crt", fx.cert,
		"/etc/gatehouse/tls/pbx-ca.crt", fx.cert,
		"/etc/gatehouse/tls/node.crt", fx.cert,
		"/etc/gatehouse/tls/node.key", fx.key,
		"/etc/gatehouse/tls/cluster-ca.crt", fx.cert,
		"$2a$10$...", fx.hash,
	).Replace(string(main) + "\n" + string(cl))
	c, err := configs.Parse("gatehouse.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	k := c.Cluster
	if k.TLS.Loaded == nil || k.TLS.CAPool == nil {
		t.Fatal("cluster certificates not loaded")
	}
	k.TLS.Loaded, k.TLS.CAPool = nil, nil
	want := configs.Cluster{
		Enabled:       true,
		Node:          "dmz-a",
		Listen:        ":6222",
		Peers:         []string{"dmz-b.example.net:6222", "dmz-c.example.net:6222"},
		ForwardListen: ":7444",
		TLS:           configs.ClusterTLS{Cert: fx.cert, Key: fx.key, CA: fx.cert},
		Replicas:      3,
		StoreDir:      filepath.Join(c.Admin.StateDir, "nats"),
	}
	if !reflect.DeepEqual(k, want) {
		t.Errorf("cluster:\n got %+v\nwant %+v", k, want)
	}
	if !k.Embedded() {
		t.Error("no nats.url, yet not embedded")
	}

	// Without the section nothing is enabled.
	if c, _ := loadExample(t); c.Cluster.Enabled || c.Cluster.Embedded() {
		t.Errorf("cluster enabled without a cluster section: %+v", c.Cluster)
	}
}

func TestClusterValidate(t *testing.T) {
	fx := newFixture(t)
	for _, tt := range []struct {
		name string
		yaml string
		want []string
	}{
		{"one node, no TLS", "cluster:\n  node: a\n", nil},
		{"bad node name", "cluster:\n  node: a.b\n", []string{`2: cluster.node: "a.b" may hold only`}},
		{"peers need TLS", "cluster:\n  node: a\n  listen: 127.0.0.2:6222\n  peers: [127.0.0.3:6222]\n", []string{
			`1: cluster.tls.cert: missing`, `1: cluster.tls.key: missing`, `1: cluster.tls.ca: missing`}},
		{"good TLS", "cluster:\n  node: a\n  peers: [b:6222, c:6222]\n  tls: {cert: {cert}, key: {key}, ca: {cert}}\n", nil},
		{"bad CA", "cluster:\n  node: a\n  tls:\n    cert: {cert}\n    key: {key}\n    ca: {notpem}\n", []string{
			`6: cluster.tls.ca: ` + fx.notPEM + ` holds no PEM certificate`}},
		{"mismatched key", "cluster:\n  node: a\n  tls:\n    cert: {cert}\n    key: {otherkey}\n    ca: {cert}\n", []string{
			`3: cluster.tls: `}},
		{"bad peer", "cluster:\n  node: a\n  peers:\n    - nohost\n    - 'b:6222'\n    - 'b:6222'\n  tls: {cert: {cert}, key: {key}, ca: {cert}}\n", []string{
			`4: cluster.peers[0]: "nohost" is not host:port`, `6: cluster.peers[2]: "b:6222" is already cluster.peers[1]`}},
		{"two replicas", "cluster:\n  node: a\n  replicas: 2\n", []string{`3: cluster.replicas: 2 copies cannot keep a quorum`}},
		{"more replicas than nodes", "cluster:\n  node: a\n  replicas: 3\n", []string{`3: cluster.replicas: 3 copies need at least as many nodes`}},
		{"listen conflicts", "turn: {listen: '127.0.0.1:6222'}\ncluster:\n  node: a\n  listen: ':6222'\n", []string{`4: cluster.listen: ":6222" conflicts with turn.listen`}},
		{"bad listen", "cluster:\n  node: a\n  listen: nope\n", []string{`3: cluster.listen: "nope" is not host:port`}},
		{"external NATS", "cluster:\n  node: a\n  nats:\n    url: 'tls://n1.example.net:4222, nats://10.0.0.2:4222'\n", nil},
		{"external NATS, bad URL", "cluster:\n  node: a\n  nats:\n    url: 'http://n1:4222,tls://n2'\n", []string{
			`4: cluster.nats.url: "http://n1:4222": the scheme is nats:// or tls://`,
			`4: cluster.nats.url: "tls://n2" is not a URL`}},
		{"external NATS with peers", "cluster:\n  node: a\n  peers: [b:6222]\n  nats: {url: 'nats://n1:4222'}\n", []string{
			`3: cluster.peers[0]: peers are the embedded server's routes`}},
		{"creds without url", "cluster:\n  node: a\n  nats: {creds: /nonexistent}\n", []string{
			`3: cluster.nats.creds: used only with cluster.nats.url`}},
		{"missing creds file", "cluster:\n  node: a\n  nats: {url: 'nats://n1:4222', creds: /nonexistent/x.creds}\n", []string{
			`3: cluster.nats.creds: stat /nonexistent/x.creds`}},
		{"forward_listen needs TLS", "cluster:\n  node: a\n  forward_listen: ':7444'\n", []string{
			`3: cluster.forward_listen: needs cluster.tls (cert, key and ca)`}},
		{"forward_listen with TLS", "cluster:\n  node: a\n  forward_listen: ':7444'\n  tls: {cert: {cert}, key: {key}, ca: {cert}}\n", nil},
		{"unknown key", "cluster:\n  node: a\n  replica: 3\n", []string{`3: cluster.replica: unknown key (did you mean "replicas"?)`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := configs.Parse("test.yaml", []byte(fx.expand(tt.yaml)))
			wantErrors(t, err, tt.want)
		})
	}
}
