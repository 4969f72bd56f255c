package main

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	binenc "encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
	"github.com/gatehouse-pbx/gatehouse/proxy/proxytest"
)

// wsAccept is Sec-WebSocket-Accept for key (RFC 6455 section 4.2.2).
func wsAccept(key string) string {
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// wsEcho is a WebSocket echo target on net/http's Hijack: it answers the
// upgrade and sends every masked client frame back unmasked, until a close
// frame, which it answers in kind.
func wsEcho(t *testing.T, addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || r.Header.Get("Sec-WebSocket-Version") != "13" {
			http.Error(w, "not a websocket upgrade", http.StatusBadRequest)
			return
		}
		c, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		wg.Add(1)
		defer wg.Done()
		defer c.Close()
		fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
			wsAccept(r.Header.Get("Sec-WebSocket-Key")))
		rw.Flush()
		for {
			op, payload, err := readWSFrame(rw.Reader)
			if err != nil {
				return
			}
			rw.Write(wsFrame(op, payload, nil))
			rw.Flush()
			if op == 8 {
				return
			}
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Close()
		wg.Wait()
	})
}

// wsFrame is one final frame of opcode op (payloads under 126 bytes),
// masked with mask when set, as a client must.
func wsFrame(op byte, payload, mask []byte) []byte {
	f := []byte{0x80 | op, byte(len(payload))}
	if mask == nil {
		return append(f, payload...)
	}
	f[1] |= 0x80
	f = append(f, mask...)
	for i, b := range payload {
		f = append(f, b^mask[i%4])
	}
	return f
}

func readWSFrame(r *bufio.Reader) (op byte, payload []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := int(h[1] & 0x7f)
	if n >= 126 {
		return 0, nil, fmt.Errorf("frame of %d: only short frames here", n)
	}
	var mask []byte
	if h[1]&0x80 != 0 {
		mask = make([]byte, 4)
		if _, err := io.ReadFull(r, mask); err != nil {
			return 0, nil, err
		}
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, err
	}
	for i := range payload {
		if mask != nil {
			payload[i] ^= mask[i%4]
		}
	}
	return h[0] & 0x0f, payload, nil
}

// h323Target is an H.323 gatekeeper stand-in: it records what each
// connection sends and answers its first complete TPKT packet with answer.
type h323Target struct {
	mu    sync.Mutex
	got   []byte
	conns int
}

func startH323Target(t *testing.T, addr string, answer []byte) *h323Target {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return serveH323Target(t, ln, answer)
}

// serveH323Target is startH323Target on ln (a TLS listener for a
// gatekeeper's TLS port).
func serveH323Target(t *testing.T, ln net.Listener, answer []byte) *h323Target {
	h := &h323Target{}
	testpeer.ServeOn(t, ln, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		h.mu.Lock()
		h.conns++
		h.mu.Unlock()
		var head [4]byte
		answered := false
		for {
			if _, err := io.ReadFull(c, head[:]); err != nil {
				return
			}
			body := make([]byte, int(binenc.BigEndian.Uint16(head[2:]))-4)
			if _, err := io.ReadFull(c, body); err != nil {
				return
			}
			h.mu.Lock()
			h.got = append(append(h.got, head[:]...), body...)
			h.mu.Unlock()
			if !answered {
				c.Write(answer)
				answered = true
			}
		}
	})
	return h
}

// h323Fixture is a packet of protocols/h323's fixtures (checked against
// tshark there).
func h323Fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../../protocols/h323/testdata/" + name + ".tpkt")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// register sends a phone's registration on c and checks that the phone
// gets the gatekeeper's answer and gk the registration, as its last bytes.
func register(t *testing.T, c net.Conn, registration, answer []byte, gk *h323Target) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write(registration)
	got := make([]byte, len(answer))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, answer) {
		t.Fatalf("the phone got % x (%v), want the gatekeeper's answer", got, err)
	}
	for deadline := time.Now().Add(5 * time.Second); !bytes.HasSuffix(gk.received(), registration); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the gatekeeper received\n% x\nwant the phone's registration\n% x", gk.received(), registration)
		}
	}
}

func (h *h323Target) connections() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.conns
}

func (h *h323Target) received() []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return bytes.Clone(h.got)
}

// TestAgentWebSocketAndH323: through one agent's tunnel, a WebSocket
// upgrade (101, then frames both ways on the same connection) to a Go
// echo target, and an H.323 registration (the GRQ fixture of a real phone,
// routed by its gatekeeper ID) to a gatekeeper that answers with the RCF
// fixture; the target gets the phone's bytes and the phone the answer.
func TestAgentWebSocketAndH323(t *testing.T) {
	grq, rcf := h323Fixture(t, "grq_example_com"), h323Fixture(t, "rcf")
	wsPort, gkPort := testpeer.FreePort(t), testpeer.FreePort(t)
	wsEcho(t, fmt.Sprintf("127.0.0.5:%d", wsPort))
	gk := startH323Target(t, fmt.Sprintf("127.0.0.5:%d", gkPort), rcf)

	ca := testpki.NewCA(t, "edge")
	cert := ca.Server("edge.example.com")
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	httpAddr, h323Addr, agentsAddr := freeAddr(t), freeAddr(t), freeAddrOn(t, "127.0.0.2")
	edge := start(t, fmt.Sprintf(`listen: {http: %q, h323: %q}
tls: {certificates: [{cert: %s, key: %s}]}
agents:
  listen: %q
  heartbeat: 1s
  accounts:
    - {name: hq-lan, token_hash: %q, names: [ws.example.com, example.com]}
services:
  - {name: ws.example.com, agent: hq-lan}
  - {name: example.com, agent: hq-lan}
blacklist: {threshold: 3}
`, httpAddr, h323Addr, cert.CertFile, cert.KeyFile, agentsAddr, hash), httpAddr)
	ag := startAgent(t, fmt.Sprintf(`edges: [%q]
account: hq-lan
token: s3cret
shutdown_timeout: 1s
edge_fingerprint: %q
services:
  - {name: ws.example.com, target: 127.0.0.5, ports: {http: %d}}
  - {name: example.com, target: 127.0.0.5, ports: {h323: %d}}
`, agentsAddr, configs.Fingerprint(cert.TLS.Leaf), wsPort, gkPort))
	ag.waitLog(t, "tunnel up")
	edge.waitLog(t, "agent tunnel up")

	t.Run("websocket", func(t *testing.T) {
		c := proxytest.DialFrom(t, "127.0.0.3", httpAddr)
		const key = "dGhlIHNhbXBsZSBub25jZQ=="
		fmt.Fprintf(c, "GET /chat HTTP/1.1\r\nHost: ws.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", key)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != wsAccept(key) {
			t.Fatalf("upgrade through the tunnel: %s %v", resp.Status, resp.Header)
		}
		for i, msg := range []string{"hello through the tunnel", "and a second frame on the same connection"} {
			c.Write(wsFrame(1, []byte(msg), []byte{1, 2, 3, byte(i)}))
			op, payload, err := readWSFrame(br)
			if err != nil || op != 1 || string(payload) != msg {
				t.Fatalf("echo %d: op %d %q %v", i, op, payload, err)
			}
		}
		c.Write(wsFrame(8, []byte{3, 232}, []byte{9, 9, 9, 9})) // close, 1000
		if op, _, err := readWSFrame(br); err != nil || op != 8 {
			t.Fatalf("close: op %d %v", op, err)
		}
	})

	t.Run("h323", func(t *testing.T) {
		register(t, proxytest.DialFrom(t, "127.0.0.4", h323Addr), grq, rcf, gk)
	})
}

// TestAgentCheckCertificate: check_certificate applies to a service behind
// an agent as to a dialled one. An H.323 registration over TLS (the GRQ and
// RRQ of alice, number 201) is forwarded through the tunnel to the
// gatekeeper's TLS port only when the phone's certificate is trusted by
// client_cas and names both aliases; otherwise to its plain port. The edge
// says which in the stream header, the agent dials the port it registered.
func TestAgentCheckCertificate(t *testing.T) {
	registration, rcf := h323Fixture(t, "grq_rrq"), h323Fixture(t, "rcf")
	ca := testpki.NewCA(t, "edge")
	plainPort, tlsPort := testpeer.FreePort(t), testpeer.FreePort(t)
	plain := startH323Target(t, fmt.Sprintf("127.0.0.5:%d", plainPort), rcf)
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.5:%d", tlsPort))
	if err != nil {
		t.Fatal(err)
	}
	secure := serveH323Target(t, tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{ca.Server("gk.lan").TLS}}), rcf)

	cert := ca.Server("example.com")
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	h323sAddr, agentsAddr := freeAddr(t), freeAddrOn(t, "127.0.0.2")
	edge := start(t, fmt.Sprintf(`listen: {h323s: %q}
tls: {certificates: [{cert: %s, key: %s}], client_cas: [%s]}
agents:
  listen: %q
  heartbeat: 1s
  accounts:
    - {name: hq-lan, token_hash: %q, names: [example.com]}
services:
  - {name: example.com, agent: hq-lan, check_certificate: true}
blacklist: {threshold: 3}
`, h323sAddr, cert.CertFile, cert.KeyFile, ca.File, agentsAddr, hash), h323sAddr)
	ag := startAgent(t, fmt.Sprintf(`edges: [%q]
account: hq-lan
token: s3cret
shutdown_timeout: 1s
edge_fingerprint: %q
services:
  - {name: example.com, target: 127.0.0.5, ports: {h323: %d, h323s: %d}, tls_verify: false}
`, agentsAddr, configs.Fingerprint(cert.TLS.Leaf), plainPort, tlsPort))
	ag.waitLog(t, "tunnel up")
	edge.waitLog(t, "agent tunnel up")

	for i, tc := range []struct {
		name    string
		cert    *testpki.Issued
		wantTLS bool
	}{
		{"no certificate", nil, false},
		{"certificate for the name, not the number", ca.Client("alice"), false},
		{"certificate for both aliases", ca.Client("alice", "201@example.com"), true},
		{"untrusted certificate", testpki.NewCA(t, "other").Client("alice", "201@example.com"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			usedBefore, unusedBefore := plain.connections(), secure.connections()
			used, unused := plain, secure
			if tc.wantTLS {
				usedBefore, unusedBefore = unusedBefore, usedBefore
				used, unused = secure, plain
			}
			cfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "example.com"}
			if tc.cert != nil {
				cfg.Certificates = []tls.Certificate{tc.cert.TLS}
			}
			d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(fmt.Sprintf("127.0.0.%d", 10+i))}, Timeout: 5 * time.Second}
			c, err := tls.DialWithDialer(d, "tcp", h323sAddr, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			register(t, c, registration, rcf, used)
			if used.connections() != usedBefore+1 || unused.connections() != unusedBefore {
				t.Fatalf("connections: used port %d → %d, other port %d → %d; want one more on the port check_certificate chose only",
					usedBefore, used.connections(), unusedBefore, unused.connections())
			}
		})
	}
}
