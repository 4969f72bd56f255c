package turn

import (
	"crypto/tls"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/stun/v3"
	"github.com/pion/turn/v4"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
)

// Test servers listen on 127.0.0.1 and relay from 127.0.0.1; clients that
// must be told apart use other 127.0.0.x addresses.
const testRealm = "example.com"

// baseConfig is a TURN server with one account whose relays may reach
// loopback peers: the test peers live there, so deny_peers is written out
// without loopback (the default list denies it).
func baseConfig() configs.TURN {
	return configs.TURN{
		Listen:       "127.0.0.1:0",
		Realm:        testRealm,
		RelayAddress: "127.0.0.1",
		Accounts:     []configs.Account{{User: "phones", Password: "pw"}, {User: "fax", Password: "pw2"}},
		DenyPeers:    []configs.Prefix{{Prefix: netip.MustParsePrefix("169.254.0.0/16")}},
	}
}

// startServer runs a Server for the test; its Close is checked at cleanup.
func startServer(t testing.TB, cfg configs.TURN, opts Options) *Server {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = discardLogger()
	}
	s, err := New(cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// echoPeer is a UDP peer on 127.0.0.1 that sends every datagram back.
func echoPeer(t testing.TB) *net.UDPAddr {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			conn.WriteToUDP(buf[:n], from)
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		<-done
	})
	return conn.LocalAddr().(*net.UDPAddr)
}

type quietLogs struct{}

func (quietLogs) NewLogger(string) logging.LeveledLogger {
	return logging.NewDefaultLeveledLoggerForScope("", logging.LogLevelDisabled, nil)
}

// dialClient connects a pion TURN client to s over network ("udp", "tcp"
// or "tls") from local (a 127.0.0.x address).
func dialClient(t testing.TB, s *Server, network, local, user, pass string) *turn.Client {
	t.Helper()
	server := s.Addr().String()
	var conn net.PacketConn
	var err error
	switch network {
	case "udp":
		conn, err = net.ListenPacket("udp4", local+":0")
	case "tcp":
		var c net.Conn
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		if c, err = d.Dial("tcp", server); err == nil {
			conn = turn.NewSTUNConn(c)
		}
	case "tls":
		server = s.TLSAddr().String()
		var c net.Conn
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		if c, err = tls.DialWithDialer(d, "tcp", server, &tls.Config{InsecureSkipVerify: true}); err == nil { //nolint:gosec // a test certificate
			conn = turn.NewSTUNConn(c)
		}
	}
	if err != nil {
		t.Fatalf("connecting to %s over %s: %v", server, network, err)
	}
	client, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: server,
		TURNServerAddr: server,
		Conn:           conn,
		Username:       user,
		Password:       pass,
		Realm:          testRealm,
		LoggerFactory:  quietLogs{},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		client.Close()
		conn.Close()
	})
	return client
}

// roundTrips sends n datagrams through relay to peer one at a time and
// expects each echoed back.
func roundTrips(t testing.TB, relay net.PacketConn, peer net.Addr, n int) {
	t.Helper()
	buf := make([]byte, 1500)
	for i := range n {
		msg := []byte{byte(i), 'g', 'a', 't', 'e'}
		if _, err := relay.WriteTo(msg, peer); err != nil {
			t.Fatalf("relaying datagram %d: %v", i, err)
		}
		relay.SetReadDeadline(time.Now().Add(3 * time.Second))
		got, from, err := relay.ReadFrom(buf)
		if err != nil {
			t.Fatalf("datagram %d not echoed: %v", i, err)
		}
		if string(buf[:got]) != string(msg) || from.String() != peer.String() {
			t.Fatalf("datagram %d: got %q from %v, want %q from %v", i, buf[:got], from, msg, peer)
		}
	}
}

// selfSigned is a certificate for 127.0.0.1, from a CA of its own.
func selfSigned(t testing.TB) tls.Certificate {
	t.Helper()
	return testpki.NewCA(t, "gatehouse test").Server("127.0.0.1").TLS
}

// rawClient speaks STUN by hand on one UDP socket, for what pion's client
// would never send.
type rawClient struct {
	t      testing.TB
	conn   net.PacketConn
	server net.Addr
	user   stun.Username
	key    stun.MessageIntegrity
	nonce  stun.Nonce
	realm  stun.Realm
}

func newRawClient(t testing.TB, s *Server, local, user, pass string) *rawClient {
	t.Helper()
	conn, err := net.ListenPacket("udp4", local+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawClient{t: t, conn: conn, server: net.UDPAddrFromAddrPort(s.Addr()),
		user: stun.NewUsername(user), key: stun.NewLongTermIntegrity(user, testRealm, pass)}
}

// send writes raw bytes to the server.
func (c *rawClient) send(raw []byte) {
	c.t.Helper()
	if _, err := c.conn.WriteTo(raw, c.server); err != nil {
		c.t.Fatal(err)
	}
}

// do sends a request built from setters and returns the response to it.
func (c *rawClient) do(setters ...stun.Setter) (*stun.Message, error) {
	req := stun.MustBuild(append([]stun.Setter{stun.TransactionID}, setters...)...)
	c.send(req.Raw)
	buf := make([]byte, 2048)
	c.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	for {
		n, _, err := c.conn.ReadFrom(buf)
		if err != nil {
			return nil, err
		}
		resp := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if resp.Decode() == nil && resp.TransactionID == req.TransactionID {
			return resp, nil
		}
	}
}

// authed sends an authenticated request of method, learning the nonce
// from a 401 first when it has none.
func (c *rawClient) authed(method stun.Method, setters ...stun.Setter) *stun.Message {
	c.t.Helper()
	if c.nonce == nil {
		resp, err := c.do(stun.NewType(method, stun.ClassRequest), requestedUDP)
		if err != nil {
			c.t.Fatalf("unauthenticated %v: %v", method, err)
		}
		var code stun.ErrorCodeAttribute
		if code.GetFrom(resp) != nil || code.Code != stun.CodeUnauthorized ||
			c.nonce.GetFrom(resp) != nil || c.realm.GetFrom(resp) != nil {
			c.t.Fatalf("unauthenticated %v: want a 401 challenge, got %v", method, resp)
		}
	}
	all := append([]stun.Setter{stun.NewType(method, stun.ClassRequest)}, setters...)
	all = append(all, c.user, c.realm, c.nonce, c.key, stun.Fingerprint)
	resp, err := c.do(all...)
	if err != nil {
		c.t.Fatalf("%v: %v", method, err)
	}
	return resp
}

var requestedUDP = stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}

// refused reports whether m is an error response (pion sends some without
// an ERROR-CODE).
func refused(m *stun.Message) bool { return m.Type.Class == stun.ClassErrorResponse }

// binds reports whether a STUN binding request from local is answered.
func binds(t testing.TB, s *Server, local string) bool {
	t.Helper()
	c := newRawClient(t, s, local, "", "")
	resp, err := c.do(stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		return false // a blocked source gets no answer at all
	}
	var mapped stun.XORMappedAddress
	if err := mapped.GetFrom(resp); err != nil {
		t.Fatalf("binding response without XOR-MAPPED-ADDRESS: %v", err)
	}
	if want := c.conn.LocalAddr().String(); mapped.String() != want {
		t.Errorf("mapped address %v, want %v", mapped, want)
	}
	return true
}
