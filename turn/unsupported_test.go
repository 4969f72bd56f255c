package turn

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

var (
	requestedTCP = stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{protoTCP, 0, 0, 0}}
	familyV6     = stun.RawAttribute{Type: attrRequestedAddressFamily, Value: []byte{familyIPv6, 0, 0, 0}}
	familyV4     = stun.RawAttribute{Type: attrRequestedAddressFamily, Value: []byte{0x01, 0, 0, 0}}
	additionalV6 = stun.RawAttribute{Type: attrAdditionalAddressFamily, Value: []byte{familyIPv6, 0, 0, 0}}
	testPassword = "pw"
	testAccount  = "phones"
)

// errorCode returns m's ERROR-CODE, 0 for a success.
func errorCode(t *testing.T, m *stun.Message, key stun.MessageIntegrity) stun.ErrorCode {
	t.Helper()
	if m.Type.Class == stun.ClassSuccessResponse {
		return 0
	}
	var code stun.ErrorCodeAttribute
	if err := code.GetFrom(m); err != nil {
		t.Fatalf("error response without ERROR-CODE: %v", m)
	}
	if code.Code == stun.CodeUnsupportedTransProto || code.Code == codeAddrFamilyNotSupported {
		if err := key.Check(m); err != nil {
			t.Fatalf("%d not signed with the client's key: %v", code.Code, err)
		}
	}
	return code.Code
}

// Allocations the relay cannot make get the RFC's error, signed, never a
// UDP/IPv4 relay the client did not ask for (pion alone grants them).
func TestUnsupportedAllocations(t *testing.T) {
	s := startServer(t, baseConfig(), Options{})
	for _, tc := range []struct {
		name  string
		attrs []stun.Setter
		want  stun.ErrorCode
	}{
		{"TCP relay (RFC 6062)", []stun.Setter{requestedTCP}, stun.CodeUnsupportedTransProto},
		{"IPv6 relay (RFC 6156)", []stun.Setter{requestedUDP, familyV6}, codeAddrFamilyNotSupported},
		{"IPv4 and IPv6 (RFC 8656 dual allocation)", []stun.Setter{requestedUDP, additionalV6}, codeAddrFamilyNotSupported},
		{"IPv4 asked for", []stun.Setter{requestedUDP, familyV4}, 0},
		{"UDP", []stun.Setter{requestedUDP}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRawClient(t, s, "127.0.0.1", testAccount, testPassword)
			if got := errorCode(t, c.authed(stun.MethodAllocate, tc.attrs...), c.key); got != tc.want {
				t.Fatalf("answered %d, want %d", got, tc.want)
			}
		})
	}
	// Unauthenticated, the credentials come first (RFC 8656 §7.2): 401.
	c := newRawClient(t, s, "127.0.0.1", testAccount, testPassword)
	resp, err := c.do(stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedTCP)
	if err != nil || errorCode(t, resp, c.key) != stun.CodeUnauthorized {
		t.Fatalf("unauthenticated TCP allocation: %v %v", resp, err)
	}
	// With a wrong password pion refuses it as it refuses any (400 or
	// 401): gatehouse does not answer 442 to a request it cannot verify.
	bad := newRawClient(t, s, "127.0.0.1", testAccount, "wrong")
	resp = bad.authed(stun.MethodAllocate, requestedTCP)
	var code stun.ErrorCodeAttribute
	if !refused(resp) || code.GetFrom(resp) != nil || code.Code == stun.CodeUnsupportedTransProto {
		t.Fatalf("wrong password: %v %v", resp, code)
	}
}

// Over TCP the answer comes on the stream, which stays usable.
func TestUnsupportedAllocationOverTCP(t *testing.T) {
	s := startServer(t, baseConfig(), Options{})
	conn, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	key := stun.NewLongTermIntegrity(testAccount, testRealm, testPassword)
	roundTrip := func(setters ...stun.Setter) *stun.Message {
		t.Helper()
		req := stun.MustBuild(append([]stun.Setter{stun.TransactionID}, setters...)...)
		if _, err := conn.Write(req.Raw); err != nil {
			t.Fatal(err)
		}
		head := make([]byte, 20)
		if _, err := io.ReadFull(conn, head); err != nil {
			t.Fatal(err)
		}
		body := make([]byte, int(head[2])<<8|int(head[3]))
		if _, err := io.ReadFull(conn, body); err != nil {
			t.Fatal(err)
		}
		m := &stun.Message{Raw: append(head, body...)}
		if err := m.Decode(); err != nil {
			t.Fatal(err)
		}
		return m
	}
	challenge := roundTrip(stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedTCP)
	var nonce stun.Nonce
	var realm stun.Realm
	if nonce.GetFrom(challenge) != nil || realm.GetFrom(challenge) != nil {
		t.Fatalf("no 401 challenge: %v", challenge)
	}
	authed := func(attrs ...stun.Setter) *stun.Message {
		all := append([]stun.Setter{stun.NewType(stun.MethodAllocate, stun.ClassRequest)}, attrs...)
		return roundTrip(append(all, stun.NewUsername(testAccount), realm, nonce, key, stun.Fingerprint)...)
	}
	if got := errorCode(t, authed(requestedTCP), key); got != stun.CodeUnsupportedTransProto {
		t.Fatalf("TCP relay over TCP: %d", got)
	}
	if got := errorCode(t, authed(requestedUDP), key); got != 0 {
		t.Fatalf("then a UDP relay on the same stream: %d", got)
	}
}
