// Package blacklist is gatehouse's fraud blacklist: it counts suspicious
// requests per client, blocks a client that sends too many, and answers the
// accept path's question "is this client blocked?".
//
// Every producer of suspicious requests (the proxy and its protocol watchers,
// turn, webui) calls [List.Report] with an [Event]; the listeners call
// [List.Blocked] for every accepted connection and every STUN/TURN packet
// before reading a byte. The admin UI lists and edits entries through the
// methods in admin.go, and metrics read [List.Stats].
//
// # Counting and blocking
//
// A client is an IPv4 address or, for IPv6, the network of
// blacklist.ipv6_prefix bits (a /64 by default) around its address: one
// subscriber line gets a /64, so counting single IPv6 addresses would let an
// attacker rotate through 2^64 of them. A client is blocked automatically for
// blacklist.expiration when it sends more than blacklist.threshold suspicious
// requests within the last 60 seconds (a sliding window). Requests reported
// while it is blocked are recorded for display but do not extend the block; its
// window starts empty when the block ends, so a misconfigured phone gets its
// full threshold back.
//
// Manual entries (from the configuration or added at run time) are networks
// blocked until removed. Whitelist entries (from the configuration or added at
// run time) win over every blacklist entry: a whitelisted client is never
// refused, its requests are counted for display only, and adding a whitelist
// entry releases the automatic blocks inside it. Entries from the
// configuration file can only be changed there.
//
// # Memory bound and eviction
//
// Records (counters and automatic blocks) are capped at blacklist.max_tracked.
// When a new client must be tracked at the cap, one record is evicted:
//
//  1. the counter (a client that is not blocked) with the oldest activity, or,
//     only when every tracked client is blocked,
//  2. the automatic block that expires soonest.
//
// Counters idle for max(60 s, blacklist.expiration) are forgotten. Manual and
// whitelist entries are made by administrators and are not counted against the
// cap.
//
// # Accept path
//
// [List.Blocked] takes no lock shared with Report: manual and whitelist entries
// live in an immutable snapshot behind an atomic pointer, matched with one map
// lookup per distinct prefix length (so a thousand /32s cost the same as one),
// and automatic blocks live in a sharded map read under a shard's read lock. It
// does not allocate. Each true answer adds one to the attempts while blocked of
// the entry that refused the client: an atomic counter the entry owns, reached
// through the snapshot or the map ([List.Refuses] asks without counting).
//
// # Persistence
//
// Automatic blocks still in force, run-time manual entries and run-time
// whitelist entries are written to blacklist.state (write to a temporary file,
// fsync, rename, fsync the directory) by a background goroutine at most one
// second after they change, and once more by Close, with when each block began
// and its attempts while blocked (a change of the attempts alone is written at
// most once a minute). Counters are not kept. A
// state file that cannot be parsed is renamed aside and logged; a malformed
// entry is logged with the file, line and entry index, and the rest loads.
package blacklist
