package blacklist

import (
	"net/netip"
	"time"
)

// Event is one suspicious request: gatehouse refused it, the target could not
// be reached for it, or the target rejected its credentials. Every producer
// (proxy, the protocol watchers, turn, webui) reports through this one type.
type Event struct {
	Client  netip.Addr `json:"client"`  // the client's address (IPv4-mapped IPv6 is unmapped by the producer)
	Type    string     `json:"type"`    // service type ("https", "sips", "turn", "admin", ...)
	Service string     `json:"service"` // service name, "" when none was found
	Reason  string     `json:"reason"`  // short, stable text: "unknown service", "url not allowed", ...
	Time    time.Time  `json:"time"`    // zero means now
	// Subject is what the client asked for in its own words (the refused
	// path, the user name it logged in as), for the refusal log; capped
	// and printable. Never part of Reason: it varies with the client.
	Subject string `json:"subject,omitempty"`
}
