package cluster

import "github.com/nats-io/nats-server/v2/server"

// stateBuckets are the buckets whose copies a node must hold before
// another node may go down without the cluster losing their quorum.
var stateBuckets = []string{BucketCounts, BucketBlocks, BucketManual, BucketWhitelist, BucketNodes}

// caughtUp reports whether this node's embedded server holds a current
// copy of every state bucket. A node restarted with an empty disk joins at
// once (its buckets open) but copies the streams from the others for a
// while: until it has, losing a second node of three leaves a stream with
// one current replica, no quorum, and writes waiting (they are kept, not
// lost) until the copy is done or the node is back. Operators wait for
// this before they restart the next node. With an external NATS this node
// holds no copies: true.
func (n *Node) caughtUp() bool {
	if n.ns == nil {
		return true
	}
	n.mu.Lock()
	ready := n.ready
	n.mu.Unlock()
	if !ready {
		return false
	}
	for _, b := range stateBuckets {
		if !n.ns.JetStreamIsStreamCurrent(server.DEFAULT_GLOBAL_ACCOUNT, "KV_"+b) {
			return false
		}
	}
	return true
}

// majority reports whether this node's embedded server has routes to
// enough of the other nodes' servers that, with itself, they are more than
// half the cluster. The JetStream meta group alone is slow to say that it
// lost its quorum: a leader cut off from every follower can go on calling
// itself current for many seconds.
func (n *Node) majority() bool {
	rz, err := n.ns.Routez(&server.RoutezOptions{})
	if err != nil {
		return false
	}
	peers := make(map[string]bool)
	for _, r := range rz.Routes {
		if r.RemoteName != "" {
			peers[r.RemoteName] = true
		}
	}
	return 2*(len(peers)+1) > len(n.cfg.Peers)+1
}
