package configs

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// AgentConfig is the whole configuration of `gatehouse agent`: the agent
// inside a LAN that dials out to its edges and serves the targets it fronts
// through them. The contract is shared/spec/agent.example.yaml.
type AgentConfig struct {
	// File is the path the configuration was loaded from.
	File string `yaml:"-"`

	// Edges are the host:port of every edge; each gets its own tunnel.
	Edges []string `yaml:"edges"`
	// Account is the agents.accounts name on the edges.
	Account string `yaml:"account"`
	// Token authenticates the agent, or Cert and Key (a client
	// certificate whose CN is Account).
	Token string `yaml:"token"`
	Cert  string `yaml:"cert"`
	Key   string `yaml:"key"`
	// EdgeFingerprint ("sha256/BASE64" of the edge certificate's SPKI) or
	// EdgeCA verifies the edge; one is required.
	EdgeFingerprint string         `yaml:"edge_fingerprint"`
	EdgeCA          string         `yaml:"edge_ca"`
	Services        []AgentService `yaml:"services"`
	Log             Log            `yaml:"log"`
	// DialTimeout bounds the agent's connection to an edge and to a target.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// ShutdownTimeout bounds how long SIGTERM waits for forwarded connections.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`

	// Loaded is the client certificate read from Cert and Key; nil without one.
	Loaded *tls.Certificate `yaml:"-"`
	// EdgeCAPool holds EdgeCA; nil when it is not set.
	EdgeCAPool *x509.CertPool `yaml:"-"`
	// Fingerprint is EdgeFingerprint decoded (32 bytes); nil when not set.
	Fingerprint []byte `yaml:"-"`
}

// AgentService is one target the agent fronts: the shape of a service of
// gatehouse.yaml, dialled by the agent inside the LAN.
type AgentService struct {
	Name   string         `yaml:"name"`
	Target string         `yaml:"target"`
	Ports  map[string]int `yaml:"ports"`
	// TLSVerify: verify the target's certificate (system roots, server
	// name Target) on its TLS ports; default true.
	TLSVerify bool `yaml:"tls_verify"`
}

// Service returns the agent's service called name (case-insensitively), or nil.
func (c *AgentConfig) Service(name string) *AgentService {
	for i := range c.Services {
		if strings.EqualFold(c.Services[i].Name, name) {
			return &c.Services[i]
		}
	}
	return nil
}

// FingerprintPrefix starts every SPKI fingerprint.
const FingerprintPrefix = "sha256/"

// Fingerprint returns the SPKI fingerprint of cert as `gatehouse
// fingerprint` prints it and edge_fingerprint holds it.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return FingerprintPrefix + base64.StdEncoding.EncodeToString(sum[:])
}

// ParseFingerprint decodes "sha256/BASE64" into the 32 bytes of the hash.
func ParseFingerprint(s string) ([]byte, error) {
	b64, ok := strings.CutPrefix(s, FingerprintPrefix)
	if !ok {
		return nil, fmt.Errorf("%q does not start with %q (make it with `gatehouse fingerprint FILE`)", s, FingerprintPrefix)
	}
	sum, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(sum) != sha256.Size {
		return nil, fmt.Errorf("%q is not the base64 of a SHA-256 hash (make it with `gatehouse fingerprint FILE`)", s)
	}
	return sum, nil
}

// IsAgentFile reports whether data looks like an agent configuration (it
// has the top-level key "edges", which gatehouse.yaml never has), so that
// `gatehouse check` can check either kind of file.
func IsAgentFile(data []byte) bool {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return false
	}
	m := resolve(doc.Content[0])
	if m.Kind != yaml.MappingNode {
		return false
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == "edges" {
			return true
		}
	}
	return false
}

// LoadAgent reads and parses the agent configuration at path. On failure
// the error is Errors, listing every problem found.
func LoadAgent(path string) (*AgentConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		msg := err.Error()
		if pe, ok := errors.AsType[*fs.PathError](err); ok {
			msg = pe.Err.Error()
		}
		return nil, Errors{{File: path, Msg: msg}}
	}
	return ParseAgent(path, data)
}

// ParseAgent parses an agent configuration held in memory, as Parse does
// for gatehouse.yaml.
func ParseAgent(file string, data []byte) (*AgentConfig, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, Errors{syntaxError(file, err)}
	}
	c := &AgentConfig{File: file}
	d := newDecoder(file, len(data))
	if len(doc.Content) > 0 && !isNull(doc.Content[0]) {
		d.value(doc.Content[0], reflect.ValueOf(c).Elem(), "")
	}
	dir := filepath.Dir(file)
	for _, p := range []*string{&c.Cert, &c.Key, &c.EdgeCA} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	written := func(key string) bool { _, ok := d.pos[key]; return ok }
	def(written, "log.level", &c.Log.Level, "info")
	def(written, "log.format", &c.Log.Format, "text")
	// Edges and targets answer within seconds when they are up.
	def(written, "dial_timeout", &c.DialTimeout, 5*time.Second)
	// As the edge's limits.shutdown_timeout.
	def(written, "shutdown_timeout", &c.ShutdownTimeout, 30*time.Second)
	for i := range c.Services {
		// Verifying is the safe default; a self-signed PBX is the exception the file says.
		def(written, fmt.Sprintf("services[%d].tls_verify", i), &c.Services[i].TLSVerify, true)
	}
	if d.steps >= 0 {
		(&validator{d: d}).agent(c)
	}
	if len(d.errs) > 0 {
		return nil, d.errs.sorted()
	}
	return c, nil
}

// agent validates an agent configuration and loads its files.
func (v *validator) agent(c *AgentConfig) {
	if len(c.Edges) == 0 {
		v.errorf("edges", "missing: the agent needs at least one edge to dial")
	}
	seen := map[string]int{}
	for i, e := range c.Edges {
		key := fmt.Sprintf("edges[%d]", i)
		host, port, err := net.SplitHostPort(e)
		n, perr := strconv.Atoi(port)
		switch {
		case err != nil || host == "":
			v.errorf(key, "%q is not host:port", e)
		case perr != nil || n < 1 || n > 65535:
			v.errorf(key, "port %q is not a number from 1 to 65535", port)
		case !isHost(host):
			v.errorf(key, "%q is not an IP address or DNS name", host)
		default:
			if j, dup := seen[strings.ToLower(e)]; dup {
				v.errorf(key, "%q is already edges[%d]", e, j)
			}
			seen[strings.ToLower(e)] = i
		}
	}
	if c.Account == "" {
		v.errorf("account", "missing")
	}
	switch {
	case c.Token != "" && (c.Cert != "" || c.Key != ""):
		v.errorf("token", "set either token or cert and key, not both")
	case c.Token != "":
	case c.Cert == "" && c.Key == "":
		v.errorf("token", "missing: the agent authenticates with a token or with cert and key")
	case c.Key == "":
		v.errorf("key", "needed with cert")
	case c.Cert == "":
		v.errorf("cert", "needed with key")
	default:
		certPEM, ok1 := v.file("cert", c.Cert)
		keyPEM, ok2 := v.file("key", c.Key)
		if !ok1 || !ok2 {
			break
		}
		if pair, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
			v.errorf("cert", "%s and %s: %v", c.Cert, c.Key, err)
		} else {
			if pair.Leaf.Subject.CommonName != c.Account {
				v.errorf("cert", "the certificate's CN is %q, not the account %q", pair.Leaf.Subject.CommonName, c.Account)
			}
			c.Loaded = &pair
		}
	}
	switch {
	case c.EdgeFingerprint == "" && c.EdgeCA == "":
		v.errorf("edge_fingerprint", "missing: set edge_fingerprint or edge_ca (an agent never talks to an edge it cannot verify)")
	case c.EdgeFingerprint != "" && c.EdgeCA != "":
		v.errorf("edge_fingerprint", "set either edge_fingerprint or edge_ca, not both")
	case c.EdgeFingerprint != "":
		fp, err := ParseFingerprint(c.EdgeFingerprint)
		if err != nil {
			v.errorf("edge_fingerprint", "%v", err)
		}
		c.Fingerprint = fp
	default:
		c.EdgeCAPool = v.certPool("edge_ca", []string{c.EdgeCA})
	}
	if len(c.Services) == 0 {
		v.errorf("services", "missing: an agent without services serves nothing")
	}
	names := map[string]int{}
	for i := range c.Services {
		s := &c.Services[i]
		key := fmt.Sprintf("services[%d]", i)
		switch {
		case s.Name != "" && !validName(s.Name):
			v.errorf(key+".name", "%q may hold only letters, digits, '.', '-', '_' and '/'", s.Name)
		default:
			v.unique(names, "services", i, "name", strings.ToLower(s.Name))
		}
		switch {
		case s.Target == "":
			v.errorf(key+".target", "missing")
		case !isHost(s.Target):
			v.errorf(key+".target", "%q is not an IP address or DNS name (ports go under ports)", s.Target)
		}
		v.ports(key, s.Ports)
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		v.errorf("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		v.errorf("log.format", "%q is not text or json", c.Log.Format)
	}
	v.positive("dial_timeout", c.DialTimeout)
	v.positive("shutdown_timeout", c.ShutdownTimeout)
}

// ports checks a service's ports mapping, written at key.ports.
func (v *validator) ports(key string, ports map[string]int) {
	if len(ports) == 0 {
		v.errorf(key+".ports", "missing: a service without ports is never forwarded to")
	}
	for typ, port := range ports {
		k := key + ".ports." + typ
		if _, ok := LookupType(typ); !ok {
			v.errorf(k, "unknown service type%s", suggest(typ, typeNames()))
		} else if port < 1 || port > 65535 {
			v.errorf(k, "port %d is not from 1 to 65535", port)
		}
	}
}
