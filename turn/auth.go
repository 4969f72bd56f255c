package turn

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // the TURN REST scheme is defined with HMAC-SHA1
	"encoding/base64"
	"strconv"
	"strings"
	"time"

	"github.com/pion/turn/v4"
)

// Reasons reported to the blacklist; short and stable, as blacklist.Event asks.
const (
	reasonBadPassword = "bad password"
	reasonUnknownUser = "unknown user"
	reasonExpired     = "expired credential"
	reasonWrongRealm  = "wrong realm"
)

// credentials holds the long-term keys: static accounts, and with a secret
// the time-limited REST credentials coturn and WebRTC apps use
// (draft-uberti-behave-turn-rest: user "expiry:name", password
// base64(HMAC-SHA1(secret, user))).
type credentials struct {
	realm    string
	accounts map[string]string
	secret   []byte // nil: no REST credentials
	now      func() time.Time
}

// key returns the long-term key for username in realm, or why there is none.
func (c *credentials) key(username, realm string) (key []byte, reason string) {
	if realm != c.realm {
		return nil, reasonWrongRealm
	}
	if pw, ok := c.accounts[username]; ok {
		return turn.GenerateAuthKey(username, realm, pw), ""
	}
	if c.secret == nil {
		return nil, reasonUnknownUser
	}
	stamp, _, _ := strings.Cut(username, ":")
	expiry, err := strconv.ParseInt(stamp, 10, 64)
	if err != nil {
		return nil, reasonUnknownUser
	}
	if expiry < c.now().Unix() {
		return nil, reasonExpired
	}
	return turn.GenerateAuthKey(username, realm, restPassword(c.secret, username)), ""
}

// quotaUser is the name allocations are counted under: the account, or the
// name part of a REST credential, so renewing a credential does not renew
// the quota. REST credentials without a name share one count.
func (c *credentials) quotaUser(username string) string {
	if _, ok := c.accounts[username]; ok {
		return username
	}
	_, name, _ := strings.Cut(username, ":")
	return "rest:" + name
}

// restPassword is the REST password of username.
func restPassword(secret []byte, username string) string {
	mac := hmac.New(sha1.New, secret)
	mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}
