package configs

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// Cluster configures several gatehouse nodes that act as one appliance:
// they share the blacklist's client state through NATS JetStream key-value
// buckets (see package cluster). The contract is shared/spec/cluster.example.yaml.
type Cluster struct {
	// Enabled: the file has a cluster section. Without one gatehouse runs
	// alone, its state in blacklist.state.
	Enabled bool `yaml:"-"`
	// Node is this node's name, unique in the cluster (default: the host
	// name). It names the node's NATS server and its entries in the buckets.
	Node string `yaml:"node"`
	// Listen is where the embedded NATS server accepts routes from the
	// other nodes (default ":6222"); unused with NATS.URL.
	Listen string `yaml:"listen"`
	// Peers are the other nodes' Listen addresses, as host:port.
	Peers []string `yaml:"peers"`
	// ForwardListen is where this node takes connections for agents that
	// other nodes carry to it (TLS with TLS below, client certificates of
	// the cluster CA only; see package cluster, forward.go). "": it takes
	// none, and still carries its own to the nodes that do.
	ForwardListen string `yaml:"forward_listen"`
	// TLS is the mutual TLS between nodes: this node's certificate and the
	// CA every node's certificate is signed by.
	TLS ClusterTLS `yaml:"tls"`
	// Replicas is how many copies JetStream keeps of each bucket: 1, or 3
	// and more (default: 3 when there are at least three nodes, else 1).
	Replicas int `yaml:"replicas"`
	// NATS, when its URL is set, is an existing NATS cluster the node uses
	// instead of embedding a server.
	NATS ClusterNATS `yaml:"nats"`
	// StoreDir holds the embedded server's JetStream files (default:
	// admin.state_dir/nats).
	StoreDir string `yaml:"store_dir"`
}

// ClusterTLS is a node's certificate and the cluster's CA.
type ClusterTLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	CA   string `yaml:"ca"`

	// Loaded is the pair read from Cert and Key, CAPool the CA; both
	// empty when the section is not set.
	Loaded *tls.Certificate `yaml:"-"`
	CAPool *x509.CertPool   `yaml:"-"`
}

// ClusterNATS names an existing NATS cluster.
type ClusterNATS struct {
	// URL is one or more comma-separated nats:// or tls:// URLs.
	URL string `yaml:"url"`
	// Creds is a NATS credentials file (JWT and NKey seed).
	Creds string `yaml:"creds"`
}

// Embedded reports whether the node runs its own NATS server.
func (c *Cluster) Embedded() bool { return c.Enabled && c.NATS.URL == "" }

// URLs splits NATS.URL.
func (c *ClusterNATS) URLs() []string {
	var out []string
	for u := range strings.SplitSeq(c.URL, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

func clusterDefaults(c *Config, written func(string) bool) {
	k := &c.Cluster
	k.Enabled = written("cluster")
	if !k.Enabled {
		return
	}
	if !written("cluster.node") {
		k.Node, _ = os.Hostname()
		k.Node, _, _ = strings.Cut(k.Node, ".")
	}
	if k.NATS.URL == "" {
		// The NATS cluster port.
		def(written, "cluster.listen", &k.Listen, ":6222")
	}
	// Three copies survive the loss of any one node; fewer nodes than
	// three cannot hold a JetStream quorum of three.
	if len(k.Peers) >= 2 || k.NATS.URL != "" {
		def(written, "cluster.replicas", &k.Replicas, 3)
	} else {
		def(written, "cluster.replicas", &k.Replicas, 1)
	}
	def(written, "cluster.store_dir", &k.StoreDir, filepath.Join(c.Admin.StateDir, "nats"))
}

// clusterListeners adds the cluster's listeners to ls, so that they are
// checked for conflicts with the service ports like the others.
func (v *validator) clusterListeners(ls []listener) []listener {
	k := &v.c.Cluster
	if k.Embedded() && k.Listen != "" {
		ls = v.listener(ls, "cluster.listen", k.Listen)
	}
	if k.Enabled && k.ForwardListen != "" {
		ls = v.listener(ls, "cluster.forward_listen", k.ForwardListen)
	}
	return ls
}

func (v *validator) cluster() {
	k := &v.c.Cluster
	if !k.Enabled {
		return
	}
	switch {
	case k.Node == "":
		v.errorf("cluster.node", "missing (the host name could not be read)")
	case !validNode(k.Node):
		v.errorf("cluster.node", "%q may hold only letters, digits, '-' and '_', at most 64", k.Node)
	}
	if k.Embedded() && k.Listen == "" {
		v.errorf("cluster.listen", "missing: the embedded NATS server needs a route port (or set cluster.nats.url)")
	}
	seen := map[string]int{}
	for i, p := range k.Peers {
		key := fmt.Sprintf("cluster.peers[%d]", i)
		host, port, err := net.SplitHostPort(p)
		switch {
		case err != nil || port == "" || host == "":
			v.errorf(key, "%q is not host:port", p)
		case !isHost(host):
			v.errorf(key, "%q is not an IP address or DNS name", host)
		default:
			if j, dup := seen[strings.ToLower(p)]; dup {
				v.errorf(key, "%q is already cluster.peers[%d]", p, j)
			}
			seen[strings.ToLower(p)] = i
		}
		if !k.Embedded() {
			v.errorf(key, "peers are the embedded server's routes: not used with cluster.nats.url")
			break
		}
	}
	nodes := 1 + len(k.Peers)
	switch {
	case k.Replicas < 1:
		v.errorf("cluster.replicas", "%d: must be 1, or 3 and more", k.Replicas)
	case k.Replicas == 2:
		v.errorf("cluster.replicas", "2 copies cannot keep a quorum when one is lost: use 1, or 3 and more")
	case k.Replicas > 5:
		v.errorf("cluster.replicas", "%d: JetStream keeps at most 5 copies", k.Replicas)
	case k.Embedded() && k.Replicas > nodes:
		v.errorf("cluster.replicas", "%d copies need at least as many nodes; this node and cluster.peers are %d", k.Replicas, nodes)
	}
	t := &k.TLS
	if t.Cert != "" || t.Key != "" || t.CA != "" || (k.Embedded() && len(k.Peers) > 0) {
		if pair, ok := v.keyPair("cluster.tls", t.Cert, t.Key); ok {
			t.Loaded = &pair
		}
		if data, ok := v.file("cluster.tls.ca", t.CA); ok {
			t.CAPool = x509.NewCertPool()
			if !t.CAPool.AppendCertsFromPEM(data) {
				v.errorf("cluster.tls.ca", "%s holds no PEM certificate", t.CA)
			}
		}
	}
	if k.ForwardListen != "" && (t.Cert == "" || t.Key == "" || t.CA == "") {
		v.errorf("cluster.forward_listen", "needs cluster.tls (cert, key and ca): nodes authenticate each other on it")
	}
	if k.NATS.URL != "" {
		urls := k.NATS.URLs()
		if len(urls) == 0 {
			v.errorf("cluster.nats.url", "holds no URL")
		}
		for _, s := range urls {
			u, err := url.Parse(s)
			switch {
			case err != nil || u.Host == "" || u.Port() == "":
				v.errorf("cluster.nats.url", "%q is not a URL like tls://nats1.example.net:4222", s)
			case u.Scheme != "nats" && u.Scheme != "tls":
				v.errorf("cluster.nats.url", "%q: the scheme is nats:// or tls://", s)
			case u.User != nil:
				v.errorf("cluster.nats.url", "%q: put credentials in cluster.nats.creds, not in the URL", s)
			}
		}
		if k.NATS.Creds != "" {
			v.file("cluster.nats.creds", k.NATS.Creds)
		}
	} else if k.NATS.Creds != "" {
		v.errorf("cluster.nats.creds", "used only with cluster.nats.url")
	}
	if k.Embedded() && k.StoreDir == "" {
		v.errorf("cluster.store_dir", "missing")
	}
}

// validNode reports whether s can name a node: it is a NATS server name
// and a token of the bucket keys.
func validNode(s string) bool {
	if len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !isAlnum(c) && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

// MarshalYAML writes nothing for a disabled cluster, so that a Config
// written back parses to the same Config.
func (c Cluster) MarshalYAML() (any, error) {
	if !c.Enabled {
		return nil, nil
	}
	type plain Cluster // without this method
	return plain(c), nil
}
