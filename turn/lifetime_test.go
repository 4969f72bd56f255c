package turn

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

const (
	tUser, tRealm, tPass = "phones", "example.com", "pw"
)

func testKey(user, realm string) []byte {
	if user == tUser && realm == tRealm {
		return stun.NewLongTermIntegrity(tUser, tRealm, tPass)
	}
	return nil
}

// request builds a TURN request as a client would: REQUESTED-TRANSPORT UDP,
// an optional LIFETIME, then credentials and FINGERPRINT.
func request(method stun.Method, lifetime time.Duration, integrity stun.MessageIntegrity, extra ...stun.Setter) []byte {
	setters := []stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest),
		stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}}
	if lifetime >= 0 {
		setters = append(setters, lifetimeAttr(lifetime))
	}
	setters = append(setters, extra...)
	if integrity != nil {
		setters = append(setters, stun.NewUsername(tUser), stun.NewRealm(tRealm), stun.NewNonce("n0nce"), integrity)
	}
	setters = append(setters, stun.Fingerprint)
	return stun.MustBuild(setters...).Raw
}

func lifetimeAttr(d time.Duration) stun.RawAttribute {
	return stun.RawAttribute{Type: stun.AttrLifetime, Value: binary.BigEndian.AppendUint32(nil, uint32(d/time.Second))}
}

func TestCapLifetime(t *testing.T) {
	const limit = 5 * time.Minute
	good := stun.NewLongTermIntegrity(tUser, tRealm, tPass)
	bad := stun.NewLongTermIntegrity(tUser, tRealm, "guess")
	tests := []struct {
		name    string
		raw     []byte
		capped  bool // rewritten to ask for limit
		comment string
	}{
		{"allocate over the cap", request(stun.MethodAllocate, time.Hour, good), true, ""},
		{"refresh over the cap", request(stun.MethodRefresh, 30*time.Minute, good), true, ""},
		{"no lifetime: pion's 10-minute default is over the cap", request(stun.MethodAllocate, -1, good), true, ""},
		{"malformed lifetime counts as absent", request(stun.MethodAllocate, -1, good,
			stun.RawAttribute{Type: stun.AttrLifetime, Value: []byte{1, 2}}), true, ""},
		{"under the cap", request(stun.MethodAllocate, 2*time.Minute, good), false, ""},
		{"at the cap", request(stun.MethodAllocate, limit, good), false, ""},
		{"refresh deleting the allocation", request(stun.MethodRefresh, 0, good), false, ""},
		{"unauthenticated first allocate", request(stun.MethodAllocate, time.Hour, nil), false, ""},
		{"wrong password: left for pion to refuse", request(stun.MethodAllocate, time.Hour, bad), false, ""},
		{"other method", request(stun.MethodCreatePermission, time.Hour, good), false, ""},
		{"channel data", []byte{0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4}, false, ""},
		{"truncated", request(stun.MethodAllocate, time.Hour, good)[:30], false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := bytes.Clone(tt.raw)
			out := capLifetime(tt.raw, limit, testKey)
			if !bytes.Equal(tt.raw, orig) {
				t.Fatal("input was modified")
			}
			if !tt.capped {
				if !bytes.Equal(out, tt.raw) {
					t.Fatal("message rewritten, want it unchanged")
				}
				return
			}
			m := &stun.Message{Raw: out}
			if err := m.Decode(); err != nil {
				t.Fatalf("rewritten message does not decode: %v", err)
			}
			in := &stun.Message{Raw: orig}
			if err := in.Decode(); err != nil {
				t.Fatal(err)
			}
			if m.Type != in.Type || m.TransactionID != in.TransactionID {
				t.Errorf("type or transaction changed: %v %x", m.Type, m.TransactionID)
			}
			v, err := m.Get(stun.AttrLifetime)
			if err != nil || len(v) != 4 || time.Duration(binary.BigEndian.Uint32(v))*time.Second != limit {
				t.Errorf("LIFETIME = %v (%v), want %v", v, err, limit)
			}
			if err := good.Check(m); err != nil {
				t.Errorf("MESSAGE-INTEGRITY: %v", err)
			}
			if err := stun.Fingerprint.Check(m); err != nil {
				t.Errorf("FINGERPRINT: %v", err)
			}
			for _, a := range []stun.AttrType{stun.AttrRequestedTransport, stun.AttrUsername, stun.AttrRealm, stun.AttrNonce} {
				want, _ := in.Get(a)
				if got, _ := m.Get(a); !bytes.Equal(got, want) {
					t.Errorf("%v = %x, want %x", a, got, want)
				}
			}
		})
	}
}

// FuzzCapLifetime: whatever arrives, capLifetime does not panic, and what it
// rewrites is a valid request asking for at most the cap, signed with the
// user's key.
func FuzzCapLifetime(f *testing.F) {
	good := stun.NewLongTermIntegrity(tUser, tRealm, tPass)
	// An authenticated Allocate over the cap: the rewrite path.
	f.Add(request(stun.MethodAllocate, time.Hour, good))
	// A Refresh without LIFETIME: the attribute is added.
	f.Add(request(stun.MethodRefresh, -1, good))
	// The unauthenticated first Allocate: passed through.
	f.Add(request(stun.MethodAllocate, time.Hour, nil))
	// A LIFETIME of the wrong size.
	f.Add(request(stun.MethodAllocate, -1, good, stun.RawAttribute{Type: stun.AttrLifetime, Value: []byte{1}}))
	// A header claiming more attributes than there are.
	f.Add([]byte{0x00, 0x03, 0x00, 0x40, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	// ChannelData.
	f.Add([]byte{0x40, 0x01, 0x00, 0x02, 0xde, 0xad, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, raw []byte) {
		const limit = 3 * time.Minute
		out := capLifetime(raw, limit, testKey)
		if bytes.Equal(out, raw) {
			return
		}
		m := &stun.Message{Raw: out}
		if err := m.Decode(); err != nil {
			t.Fatalf("rewritten message does not decode: %v", err)
		}
		v, err := m.Get(stun.AttrLifetime)
		if err != nil || len(v) != 4 || time.Duration(binary.BigEndian.Uint32(v))*time.Second > limit {
			t.Fatalf("rewritten LIFETIME = %x (%v)", v, err)
		}
		if err := good.Check(m); err != nil {
			t.Fatalf("rewritten MESSAGE-INTEGRITY: %v", err)
		}
	})
}
