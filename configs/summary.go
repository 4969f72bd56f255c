package configs

import (
	"fmt"
	"strings"
)

// Summary describes the configuration in a few lines, for `gatehouse check`:
// what is accepted where, the services and their types, and the state of
// the blacklist, TURN and the admin UI.
func (c *Config) Summary() string {
	var b strings.Builder
	var listen []string
	for _, t := range ServiceTypes {
		if addr, ok := c.Listen[t.Name]; ok {
			listen = append(listen, t.Name+" "+addr)
		}
	}
	if addr, ok := c.Listen[ListenAny]; ok {
		listen = append(listen, "any "+addr)
	}
	fmt.Fprintf(&b, "listen: %s\n", orNone(strings.Join(listen, ", ")))

	if a := c.TLS.ACME; a != nil {
		fmt.Fprintf(&b, "acme: %s from %s, state %s\n", strings.Join(a.Names, ", "), a.CA, a.StateDir)
	}
	fmt.Fprintf(&b, "%s\n", count(len(c.Services), "service"))
	for _, s := range c.Services {
		var ports []string
		for _, t := range ServiceTypes {
			if p, ok := s.Port(t.Name); ok {
				ports = append(ports, fmt.Sprintf("%s %d", t.Name, p))
			}
		}
		if s.Agent != "" {
			fmt.Fprintf(&b, "  %s -> agent %s\n", s.Name, s.Agent)
			continue
		}
		fmt.Fprintf(&b, "  %s -> %s: %s", s.Name, s.Target, strings.Join(ports, ", "))
		if s.CheckCertificate {
			b.WriteString(" (check certificate)")
		}
		if s.ProxyProtocol != "" {
			b.WriteString(" (PROXY protocol " + s.ProxyProtocol + ")")
		}
		b.WriteString("\n")
	}

	bl := c.Blacklist
	fmt.Fprintf(&b, "blacklist: threshold %d a minute, expiration %s, %d whitelisted, %d blacklisted, state %s\n",
		bl.Threshold, bl.Expiration, len(bl.Whitelist), len(bl.Blacklist), orNone(bl.State))

	t := c.TURN
	var turn []string
	if t.Listen != "" {
		turn = append(turn, t.Listen)
	}
	if t.TLSListen != "" {
		turn = append(turn, t.TLSListen+" (TLS)")
	}
	if t.Listen != "" && t.AlternateAddress != "" {
		turn = append(turn, t.AlternateAddress+" (NAT discovery, UDP)")
	}
	switch {
	case len(turn) == 0:
		b.WriteString("turn: off\n")
	case len(t.Accounts) == 0 && t.Secret == "":
		fmt.Fprintf(&b, "turn: %s, STUN only\n", strings.Join(turn, ", "))
	default:
		fmt.Fprintf(&b, "turn: %s, realm %s, %s, relay %s ports %s\n",
			strings.Join(turn, ", "), t.Realm, count(len(t.Accounts), "account"), orNone(t.RelayAddress), t.RelayPorts)
	}

	if c.Agents.Listen != "" {
		fmt.Fprintf(&b, "agents: %s, %s, heartbeat %s\n", c.Agents.Listen, count(len(c.Agents.Accounts), "account"), c.Agents.Heartbeat)
	}
	if c.Admin.Listen == "" {
		b.WriteString("admin: off\n")
	} else {
		fmt.Fprintf(&b, "admin: %s, %s\n", c.Admin.Listen, count(len(c.Admin.Users), "user"))
	}

	switch k := c.Cluster; {
	case !k.Enabled:
	case k.Embedded():
		fmt.Fprintf(&b, "cluster: node %s, embedded NATS routes on %s to %s, %d replicas, store %s\n",
			k.Node, k.Listen, orNone(strings.Join(k.Peers, ", ")), k.Replicas, k.StoreDir)
	default:
		fmt.Fprintf(&b, "cluster: node %s, NATS %s, %d replicas\n", k.Node, k.NATS.URL, k.Replicas)
	}
	return b.String()
}

// Summary describes an agent configuration for `gatehouse check`.
func (c *AgentConfig) Summary() string {
	var b strings.Builder
	verify := "fingerprint " + c.EdgeFingerprint
	if c.EdgeCA != "" {
		verify = "CA " + c.EdgeCA
	}
	auth := "token"
	if c.Loaded != nil {
		auth = "certificate"
	}
	fmt.Fprintf(&b, "agent: account %s (%s), edges %s, verified by %s\n", c.Account, auth, strings.Join(c.Edges, ", "), verify)
	fmt.Fprintf(&b, "%s\n", count(len(c.Services), "service"))
	for _, s := range c.Services {
		var ports []string
		for _, t := range ServiceTypes {
			if p, ok := s.Ports[t.Name]; ok {
				ports = append(ports, fmt.Sprintf("%s %d", t.Name, p))
			}
		}
		fmt.Fprintf(&b, "  %s -> %s: %s", s.Name, s.Target, strings.Join(ports, ", "))
		if !s.TLSVerify {
			b.WriteString(" (TLS not verified)")
		}
		b.WriteString("\n")
	}
	return b.String()
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
