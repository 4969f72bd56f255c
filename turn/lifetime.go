package turn

import (
	"encoding/binary"
	"time"

	"github.com/pion/stun/v3"
)

const (
	// maxGrantable is the longest lifetime pion grants as asked: it answers
	// a request for an hour or more with its 10-minute default.
	maxGrantable = time.Hour - time.Second
	// defaultLifetime is what pion grants when LIFETIME is absent or malformed.
	defaultLifetime = 10 * time.Minute
)

// capLifetime enforces the allocation lifetime cap, which pion has no hook
// for. When raw is an authenticated Allocate or Refresh whose lifetime (asked
// for, or pion's default) exceeds limit, it returns a copy asking for limit
// instead, re-signed with the user's key: the client then learns the granted
// lifetime from the response, as RFC 8656 section 7.2 intends. Anything else
// is returned unchanged, including requests whose integrity does not check
// out, which pion refuses and reports itself.
func capLifetime(raw []byte, limit time.Duration, key func(username, realm string) []byte) []byte {
	if !stun.IsMessage(raw) {
		return raw
	}
	var t stun.MessageType
	t.ReadValue(binary.BigEndian.Uint16(raw))
	if t.Class != stun.ClassRequest || t.Method != stun.MethodAllocate && t.Method != stun.MethodRefresh {
		return raw
	}
	// Decode keeps slices into Raw and Check rewrites the length in place
	// for a while, so work on a copy.
	m := &stun.Message{Raw: append([]byte(nil), raw...)}
	if m.Decode() != nil || !m.Contains(stun.AttrMessageIntegrity) {
		return raw
	}
	asked := defaultLifetime
	if v, err := m.Get(stun.AttrLifetime); err == nil && len(v) == 4 {
		asked = time.Duration(binary.BigEndian.Uint32(v)) * time.Second
		if asked == 0 {
			return raw // a Refresh deleting the allocation
		}
	}
	if asked <= limit {
		return raw
	}
	var user stun.Username
	var realm stun.Realm
	if user.GetFrom(m) != nil || realm.GetFrom(m) != nil {
		return raw
	}
	k := key(user.String(), realm.String())
	if k == nil || stun.MessageIntegrity(k).Check(m) != nil {
		return raw
	}

	out := stun.New()
	out.Type = m.Type
	out.TransactionID = m.TransactionID
	out.WriteHeader()
	for _, a := range m.Attributes {
		if a.Type == stun.AttrMessageIntegrity {
			break // what follows is FINGERPRINT or ignored
		}
		if a.Type != stun.AttrLifetime {
			out.Add(a.Type, a.Value)
		}
	}
	out.Add(stun.AttrLifetime, binary.BigEndian.AppendUint32(nil, uint32(limit/time.Second)))
	if stun.MessageIntegrity(k).AddTo(out) != nil {
		return raw
	}
	if m.Contains(stun.AttrFingerprint) && stun.Fingerprint.AddTo(out) != nil {
		return raw
	}
	return out.Raw
}
