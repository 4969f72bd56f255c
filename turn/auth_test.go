package turn

import (
	"bytes"
	"testing"
	"time"

	"github.com/pion/turn/v4"
)

func TestCredentials(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	c := &credentials{
		realm:    "example.com",
		accounts: map[string]string{"phones": "pw", "1700000999:bob": "static"},
		secret:   []byte("s3cret"),
		now:      func() time.Time { return now },
	}
	// Credentials as a REST API (or pion's helper) would issue them.
	restUser, restPass, err := turn.GenerateLongTermTURNRESTCredentials("s3cret", "alice", time.Until(now.Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, user, realm, password string
		reason                      string // "" when a key is expected
		quotaUser                   string
	}{
		{"account", "phones", "example.com", "pw", "", "phones"},
		{"account in another realm", "phones", "other.org", "", reasonWrongRealm, "phones"},
		{"unknown account", "nobody", "example.com", "", reasonUnknownUser, "rest:"},
		{"rest", restUser, "example.com", restPass, "", "rest:alice"},
		{"rest without a name", "1700000500", "example.com", restPassword([]byte("s3cret"), "1700000500"), "", "rest:"},
		{"rest expired", "1699999999:alice", "example.com", "", reasonExpired, "rest:alice"},
		{"rest garbled stamp", "17e8:alice", "example.com", "", reasonUnknownUser, "rest:alice"},
		{"rest empty stamp", ":alice", "example.com", "", reasonUnknownUser, "rest:alice"},
		{"account that looks like rest wins", "1700000999:bob", "example.com", "static", "", "1700000999:bob"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, reason := c.key(tt.user, tt.realm)
			if reason != tt.reason {
				t.Fatalf("key(%q) reason = %q, want %q", tt.user, reason, tt.reason)
			}
			if tt.reason == "" {
				if want := turn.GenerateAuthKey(tt.user, tt.realm, tt.password); !bytes.Equal(key, want) {
					t.Errorf("key(%q) = %x, want %x", tt.user, key, want)
				}
			} else if key != nil {
				t.Errorf("key(%q) = %x with reason %q", tt.user, key, reason)
			}
			if got := c.quotaUser(tt.user); got != tt.quotaUser {
				t.Errorf("quotaUser(%q) = %q, want %q", tt.user, got, tt.quotaUser)
			}
		})
	}

	// Without a secret, REST-looking names are just unknown users.
	c.secret = nil
	if _, reason := c.key(restUser, "example.com"); reason != reasonUnknownUser {
		t.Errorf("without a secret: reason = %q, want %q", reason, reasonUnknownUser)
	}
}
