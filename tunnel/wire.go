// Package tunnel is the edge side of agent tunnels: agents inside a LAN dial
// out to agents.listen over TLS, say who they are and which services they
// front (the hello, below), and then serve HTTP/2 on that connection, with
// the edge as the HTTP/2 client: every connection the edge forwards to an
// agent's service is one full-duplex stream, opened by the edge with the
// stream header (service, type, TLS towards the target, client address) and
// carrying the raw bytes of the connection both ways. The agent dials only
// targets of its own configuration; the edge never names an address.
//
// The wire, after the TLS handshake (ALPN "gatehouse-agent/1"):
//
//	agent → edge: hello    4-byte big-endian length, JSON Hello
//	edge → agent: welcome  4-byte big-endian length, JSON Welcome
//	then HTTP/2: the agent is the server, the edge the client.
//
// This file is the wire, shared with package agent; edge.go is the edge.
package tunnel

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/textproto"
	"strconv"
	"strings"

	"github.com/gatehouse-pbx/gatehouse/configs"
)

// ALPN is the application protocol agents offer in the TLS handshake.
const ALPN = "gatehouse-agent/1"

// StreamPath is the path of the request that opens a stream.
const StreamPath = "/gatehouse/stream"

// Limits of the hello: a registration is a few hundred bytes; these bound
// what an unauthenticated peer can make the edge read and decode.
const (
	maxMessage  = 64 << 10
	maxServices = 256
)

// Hello is the agent's first message: who it is, and what it serves.
type Hello struct {
	Version int    `json:"version"` // 1
	Account string `json:"account"`
	// Token is the account's secret; empty when the agent authenticates
	// with its TLS client certificate.
	Token    string     `json:"token,omitempty"`
	Services []Register `json:"services"`
}

// Register is one service an agent offers: its name and the ports of its
// target, by service type (the same keys as a service's ports).
type Register struct {
	Name  string         `json:"name"`
	Ports map[string]int `json:"ports"`
}

// Welcome is the edge's answer to a Hello.
type Welcome struct {
	// Error is set when the edge refuses the tunnel; it is then closed.
	Error string `json:"error,omitempty"`
	// HeartbeatMS is how often the edge pings, in milliseconds: an agent
	// that hears nothing for three of them drops the tunnel and redials.
	HeartbeatMS int64 `json:"heartbeat_ms,omitempty"`
	// Accepted are the names registered; Refused the others, with why.
	Accepted []string  `json:"accepted,omitempty"`
	Refused  []Refused `json:"refused,omitempty"`
}

// Refused is a name the edge did not register.
type Refused struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// Write writes one length-prefixed JSON message.
func Write(w io.Writer, msg any) error {
	body, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	if len(body) > maxMessage {
		return errTooLarge
	}
	buf := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(body)), uint32(len(body)))
	_, err = w.Write(append(buf, body...))
	return err
}

// read reads one length-prefixed message, at most maxMessage bytes.
func read(r io.Reader) ([]byte, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > maxMessage {
		return nil, errTooLarge
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	return body, nil
}

// strict decodes exactly one JSON value into v, refusing unknown fields
// and trailing bytes.
func strict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errTrailing
	}
	return nil
}

// ReadHello reads and checks an agent's hello: version 1, an account, at
// most maxServices services, each with a concrete name and known service
// types with ports from 1 to 65535. Names are lowercased.
func ReadHello(r io.Reader) (*Hello, error) {
	body, err := read(r)
	if err != nil {
		return nil, err
	}
	return DecodeHello(body)
}

// DecodeHello is ReadHello on a message already read.
func DecodeHello(body []byte) (*Hello, error) {
	var h Hello
	if err := strict(body, &h); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadHello, err)
	}
	switch {
	case h.Version != 1:
		return nil, fmt.Errorf("%w: version %d", errBadHello, h.Version)
	case h.Account == "" || len(h.Account) > 255:
		return nil, fmt.Errorf("%w: no account", errBadHello)
	case len(h.Services) > maxServices:
		return nil, fmt.Errorf("%w: more than %d services", errBadHello, maxServices)
	}
	seen := map[string]bool{}
	for i := range h.Services {
		s := &h.Services[i]
		s.Name = configs.FoldName(s.Name) // then validName: ASCII only
		if !validName(s.Name) {
			return nil, fmt.Errorf("%w: service %d: bad name", errBadHello, i)
		}
		if seen[s.Name] {
			return nil, fmt.Errorf("%w: service %q twice", errBadHello, s.Name)
		}
		seen[s.Name] = true
		if len(s.Ports) == 0 {
			return nil, fmt.Errorf("%w: service %q has no ports", errBadHello, s.Name)
		}
		for typ, p := range s.Ports {
			if _, ok := configs.LookupType(typ); !ok || p < 1 || p > 65535 {
				return nil, fmt.Errorf("%w: service %q: bad port", errBadHello, s.Name)
			}
		}
	}
	return &h, nil
}

// ReadWelcome reads the edge's answer.
func ReadWelcome(r io.Reader) (*Welcome, error) {
	body, err := read(r)
	if err != nil {
		return nil, err
	}
	var w Welcome
	if err := strict(body, &w); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadWelcome, err)
	}
	if w.Error == "" && w.HeartbeatMS <= 0 {
		return nil, fmt.Errorf("%w: no heartbeat", errBadWelcome)
	}
	return &w, nil
}

// validName: a routing name as configs allows it (a DNS name or an H.323
// gatekeeper ID), never a pattern, at most 253 bytes.
func validName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte(".-_/", c) >= 0) {
			return false
		}
	}
	return true
}

// Stream is what opens one forwarded connection: the request headers of
// the stream's HTTP/2 request.
type Stream struct {
	Service string // the registered name
	// Type is the service type of the port the mapping rule chose ("sips"):
	// the agent dials its service's port for it.
	Type string
	// TLS: the agent speaks TLS to the target (the edge chose a TLS port).
	TLS bool
	// Client is the address of the client on the edge, for the agent's log.
	Client netip.AddrPort
}

// The headers of a stream request.
const (
	hService = "Gatehouse-Service"
	hType    = "Gatehouse-Type"
	hTLS     = "Gatehouse-Tls"
	hClient  = "Gatehouse-Client"
	// HError carries the agent's reason when it cannot open a stream.
	HError = "Gatehouse-Error"
)

// SetHeader writes s into h.
func (s Stream) SetHeader(h http.Header) {
	h.Set(hService, s.Service)
	h.Set(hType, s.Type)
	h.Set(hTLS, strconv.FormatBool(s.TLS))
	h.Set(hClient, s.Client.String())
}

// ParseStream reads a stream header, strictly: each field exactly once,
// a concrete service name, a known type, a boolean, an address and port.
func ParseStream(h http.Header) (Stream, error) {
	var s Stream
	get := func(k string) (string, error) {
		v := h.Values(k)
		if len(v) != 1 {
			return "", fmt.Errorf("%w: %s given %d times", errBadStream, k, len(v))
		}
		return v[0], nil
	}
	var err error
	if s.Service, err = get(hService); err != nil {
		return s, err
	}
	if !validName(s.Service) {
		return s, fmt.Errorf("%w: bad service name", errBadStream)
	}
	if s.Type, err = get(hType); err != nil {
		return s, err
	}
	if _, ok := configs.LookupType(s.Type); !ok {
		return s, fmt.Errorf("%w: unknown type", errBadStream)
	}
	v, err := get(hTLS)
	if err != nil {
		return s, err
	}
	switch v {
	case "true":
		s.TLS = true
	case "false":
	default:
		return s, fmt.Errorf("%w: %s is not true or false", errBadStream, hTLS)
	}
	if v, err = get(hClient); err != nil {
		return s, err
	}
	if s.Client, err = netip.ParseAddrPort(v); err != nil {
		return s, fmt.Errorf("%w: bad client address", errBadStream)
	}
	return s, nil
}

// maxStreamBlock bounds a stream header sent outside HTTP/2 (the cluster's
// forwarding carrier): four short fields.
const maxStreamBlock = 2 << 10

// WriteStream writes s as a block of its own, outside HTTP/2: the stream
// header's fields as MIME header lines, length-prefixed like the hello. The
// cluster carries a connection for an agent to the node holding its tunnel
// with it, so that one decoder (ParseStream) reads every stream header.
func WriteStream(w io.Writer, s Stream) error {
	h := http.Header{}
	s.SetHeader(h)
	var b bytes.Buffer
	b.Write([]byte{0, 0, 0, 0})
	h.Write(&b)
	binary.BigEndian.PutUint32(b.Bytes(), uint32(b.Len()-4))
	_, err := w.Write(b.Bytes())
	return err
}

// ReadStream reads a block written by WriteStream, at most maxStreamBlock
// bytes, and decodes it with DecodeStream.
func ReadStream(r io.Reader) (Stream, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return Stream{}, err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > maxStreamBlock {
		return Stream{}, errTooLarge
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(r, body); err != nil {
		return Stream{}, err
	}
	return DecodeStream(body)
}

// DecodeStream decodes a stream block: MIME header lines of the stream
// header's fields and nothing else (no other field, no bytes after the
// lines), then ParseStream's checks.
func DecodeStream(body []byte) (Stream, error) {
	tr := textproto.NewReader(bufio.NewReader(io.MultiReader(bytes.NewReader(body), strings.NewReader("\r\n"))))
	mh, err := tr.ReadMIMEHeader()
	if err != nil {
		return Stream{}, fmt.Errorf("%w: %v", errBadStream, err)
	}
	if _, err := tr.R.ReadByte(); err != io.EOF {
		return Stream{}, fmt.Errorf("%w: bytes after the fields", errBadStream)
	}
	for k := range mh {
		switch k {
		case hService, hType, hTLS, hClient:
		default:
			return Stream{}, fmt.Errorf("%w: unknown field %q", errBadStream, k)
		}
	}
	return ParseStream(http.Header(mh))
}

var (
	errTooLarge   = errors.New("tunnel: message too large")
	errTrailing   = errors.New("tunnel: bytes after the message")
	errBadHello   = errors.New("tunnel: bad hello")
	errBadWelcome = errors.New("tunnel: bad welcome")
	errBadStream  = errors.New("tunnel: bad stream header")
)
