package cluster

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// countsBatch is how many counts one pass of the writer sends before it
// looks at the blocks again: a block never waits behind more than one
// batch of counts.
const countsBatch = 1000

// writeCounts sends counts (key → value of BucketCounts) pipelined: one
// asynchronous publish each, then the acknowledgements. A node under a
// flood of addresses writes one count per address and change, thousands a
// second; one synchronous Put after the other (a round trip and an R3
// commit each) fell behind at that rate, and the blocks queued behind it
// spread seconds late. What is not acknowledged is put back for the next
// pass, and so is what is beyond countsBatch (the writer is woken for it).
func (n *Node) writeCounts(counts map[string][]byte) {
	type pending struct {
		key string
		ack jetstream.PubAckFuture
	}
	var sent []pending
	for k, v := range counts {
		if len(sent) == countsBatch {
			n.signal() // the rest in the next pass, after any block
			break
		}
		ack, err := n.js.PublishAsync("$KV."+BucketCounts+"."+k, v)
		if err != nil {
			n.fail("cluster: write failed; kept to retry", fmt.Errorf("%s %s: %w", BucketCounts, k, err))
			break
		}
		sent = append(sent, pending{k, ack})
	}
	timeout := time.NewTimer(writeTimeout)
	defer timeout.Stop()
	expired := false
	for _, p := range sent {
		if expired {
			break
		}
		select {
		case <-p.ack.Ok():
			delete(counts, p.key)
		case err := <-p.ack.Err():
			n.fail("cluster: write failed; kept to retry", fmt.Errorf("%s %s: %w", BucketCounts, p.key, err))
		case <-timeout.C:
			expired = true
			n.fail("cluster: write failed; kept to retry", fmt.Errorf("%s: no acknowledgement within %v", BucketCounts, writeTimeout))
		case <-n.ctx.Done():
			expired = true
		}
	}
	if len(counts) > 0 {
		n.requeue(nil, counts)
	}
}
