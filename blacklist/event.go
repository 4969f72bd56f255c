package blacklist

import (
	"net/netip"
	"time"
)

// Event is one suspicious request: gatehouse refused it, the target could not
// be reached for it, or the target rejected its credentials. Every producer
// (proxy, the protocol watchers, turn, webui) reports through this one type.
type Event struct {
	Client  netip.Addr // the client's address (IPv4-mapped IPv6 is unmapped by the producer)
	Type    string     // service type ("https", "sips", "turn", "admin", ...)
	Service string     // service name, "" when none was found
	Reason  string     // short, stable text: "unknown service", "url not allowed", ...
	Time    time.Time  // zero means now
}
