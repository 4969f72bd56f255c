package webui

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/gatehouse-pbx/gatehouse/configs"
)

// Cookie and field names.
const (
	sessionCookie = "gatehouse_session"
	loginCookie   = "gatehouse_login" // binds the login form to the browser that loaded it
	csrfField     = "csrf"
	csrfHeader    = "X-CSRF-Token"
)

// maxSessions bounds the sessions held at once; only correct passwords
// make one, so reaching it means something is wrong: the oldest go first.
const maxSessions = 1000

// session is one login.
type session struct {
	user    string
	csrf    string
	expires time.Time
	flash   string // one message for the next page, after a redirect
}

// sessions are the logins in force, by token. Only a hash of each token is
// kept, so that a memory dump does not hand out working cookies.
type sessions struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[[32]byte]*session
}

func newSessions(now func() time.Time) *sessions {
	return &sessions{now: now, m: map[[32]byte]*session{}}
}

func tokenKey(token string) [32]byte { return sha256.Sum256([]byte(token)) }

// newToken is 256 random bits, URL-safe.
func newToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// create makes a session for user lasting ttl and returns its token.
func (ss *sessions) create(user string, ttl time.Duration) (string, *session) {
	token := newToken()
	now := ss.now()
	sess := &session{user: user, csrf: newToken(), expires: now.Add(ttl)}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for k, v := range ss.m {
		if !now.Before(v.expires) {
			delete(ss.m, k)
		}
	}
	for len(ss.m) >= maxSessions {
		var oldest [32]byte
		var first time.Time
		for k, v := range ss.m {
			if first.IsZero() || v.expires.Before(first) {
				oldest, first = k, v.expires
			}
		}
		delete(ss.m, oldest)
	}
	ss.m[tokenKey(token)] = sess
	return token, sess
}

// get returns the live session with token, or nil; an expired one is dropped.
func (ss *sessions) get(token string) *session {
	k := tokenKey(token)
	ss.mu.Lock()
	defer ss.mu.Unlock()
	sess := ss.m[k]
	if sess != nil && !ss.now().Before(sess.expires) {
		delete(ss.m, k)
		return nil
	}
	return sess
}

func (ss *sessions) remove(token string) {
	ss.mu.Lock()
	delete(ss.m, tokenKey(token))
	ss.mu.Unlock()
}

// takeFlash returns and clears the session's message.
func (ss *sessions) takeFlash(sess *session) string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	f := sess.flash
	sess.flash = ""
	return f
}

func (ss *sessions) setFlash(sess *session, msg string) {
	ss.mu.Lock()
	sess.flash = msg
	ss.mu.Unlock()
}

// keepUsers ends the sessions of users no longer configured.
func (ss *sessions) keepUsers(users []configs.AdminUser) {
	ok := map[string]bool{}
	for _, u := range users {
		ok[u.Name] = true
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for k, v := range ss.m {
		if !ok[v.user] {
			delete(ss.m, k)
		}
	}
}

// basicCache remembers recently verified Basic credentials for a minute, so
// that a script polling the API or a Prometheus scrape does not cost a
// bcrypt comparison (tens of milliseconds) per request. It holds SHA-256
// sums of user, password and hash, never the password.
type basicCache struct {
	mu sync.Mutex
	m  map[[32]byte]time.Time
}

const basicCacheTTL = time.Minute

func newBasicCache() *basicCache { return &basicCache{m: map[[32]byte]time.Time{}} }

func basicKey(user, password, hash string) [32]byte {
	return sha256.Sum256([]byte(user + "\x00" + password + "\x00" + hash))
}

func (c *basicCache) ok(k [32]byte, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	until, hit := c.m[k]
	return hit && now.Before(until)
}

func (c *basicCache) add(k [32]byte, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) > 100 {
		clear(c.m)
	}
	c.m[k] = now.Add(basicCacheTTL)
}

func (c *basicCache) clear() {
	c.mu.Lock()
	clear(c.m)
	c.mu.Unlock()
}

// dummyHash is compared against when the user name is unknown, so that the
// answer takes as long as for a known user with a wrong password.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("gatehouse: no such user"), bcrypt.DefaultCost)

// checkPassword reports whether user and password match admin.users.
func (s *Server) checkPassword(user, password string) bool {
	hash := dummyHash
	found := false
	for _, u := range s.cfg.Load().Admin.Users {
		if subtle.ConstantTimeCompare([]byte(u.Name), []byte(user)) == 1 {
			hash, found = []byte(u.PasswordHash), true
			break
		}
	}
	k := basicKey(user, password, string(hash))
	if found && s.basic.ok(k, s.now()) {
		return true
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil || !found {
		return false
	}
	s.basic.add(k, s.now())
	return true
}

// auth is who made a request, and how.
type auth struct {
	user    string
	session *session // nil for Basic credentials
	token   string   // the session cookie's value
}

type authKey struct{}

func authOf(r *http.Request) *auth {
	a, _ := r.Context().Value(authKey{}).(*auth)
	return a
}

// sessionOf returns the live session the request's cookie names, or nil.
func (s *Server) sessionOf(r *http.Request) (*session, string) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil, ""
	}
	sess := s.sessions.get(c.Value)
	if sess == nil {
		return nil, ""
	}
	return sess, c.Value
}

// isSafe reports whether a method changes nothing.
func isSafe(method string) bool {
	return method == http.MethodGet || method == http.MethodHead
}

// validCSRF reports whether the request carries the session's CSRF token,
// in the header (scripts) or the form field (pages).
func validCSRF(r *http.Request, sess *session) bool {
	got := r.Header.Get(csrfHeader)
	if got == "" {
		got = r.PostFormValue(csrfField) // the body is already limited by the handler
	}
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(sess.csrf)) == 1
}

// api guards a JSON endpoint: Basic credentials or a session; with a
// session, a state-changing method also needs the CSRF header.
// Unauthenticated: 401 with a Basic challenge.
func (s *Server) api(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := s.authenticate(w, r)
		if a == nil {
			return
		}
		if a.session != nil && !isSafe(r.Method) &&
			subtle.ConstantTimeCompare([]byte(r.Header.Get(csrfHeader)), []byte(a.session.csrf)) != 1 {
			writeError(w, http.StatusForbidden, "missing or wrong "+csrfHeader+" header")
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), authKey{}, a)))
	})
}

// authenticate finds who sent r, answering 401 (and reporting wrong
// credentials to the blacklist) when nobody valid did.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) *auth {
	if user, password, ok := r.BasicAuth(); ok {
		if s.checkPassword(user, password) {
			return &auth{user: user}
		}
		s.report(r, "admin credentials rejected")
	} else if sess, token := s.sessionOf(r); sess != nil {
		return &auth{user: sess.user, session: sess, token: token}
	}
	w.Header().Set("WWW-Authenticate", `Basic realm="gatehouse admin", charset="UTF-8"`)
	writeError(w, http.StatusUnauthorized, "authentication required: HTTP Basic with an admin user, or a session cookie")
	return nil
}

// page guards a page: a session is required (else the login form), and a
// state-changing method needs the CSRF form field.
func (s *Server) page(h http.HandlerFunc) http.Handler { return s.pageLimit(maxFormBody, h) }

// pageLimit is page for forms of up to max bytes. The body is read only
// once the session is known, so strangers cannot make us parse large forms.
func (s *Server) pageLimit(max int64, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, token := s.sessionOf(r)
		if sess == nil {
			if _, err := r.Cookie(sessionCookie); err == nil {
				http.SetCookie(w, s.cookie(sessionCookie, "", -1)) // expired or unknown: forget it
			}
			if isSafe(r.Method) {
				http.Redirect(w, r, "/login", http.StatusSeeOther)
			} else {
				http.Error(w, "Your session has ended: log in again.", http.StatusUnauthorized)
			}
			return
		}
		if !isSafe(r.Method) {
			if !s.limitForm(w, r, max) {
				return
			}
			if !validCSRF(r, sess) {
				http.Error(w, "Forbidden: the form's CSRF token is missing or wrong. Reload the page and try again.", http.StatusForbidden)
				return
			}
		}
		a := &auth{user: sess.user, session: sess, token: token}
		h(w, r.WithContext(context.WithValue(r.Context(), authKey{}, a)))
	})
}

// cookie makes a cookie the way every one of ours is made; maxAge < 0
// deletes it.
func (s *Server) cookie(name, value string, maxAge time.Duration) *http.Cookie {
	c := &http.Cookie{
		Name: name, Value: value, Path: "/",
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode,
	}
	if maxAge < 0 {
		c.MaxAge = -1
	} else {
		c.MaxAge = int(maxAge / time.Second)
		c.Expires = s.now().Add(maxAge)
	}
	return c
}

// loginTTL bounds how long a login form may stay open.
const loginTTL = time.Hour

func (s *Server) loginForm(w http.ResponseWriter, r *http.Request) {
	if sess, _ := s.sessionOf(r); sess != nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	s.renderLogin(w, r, http.StatusOK, "")
}

// renderLogin shows the login form with a fresh login token, bound to the
// browser by a cookie (double submit): a login cannot be forced on a
// browser from another site.
func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, status int, msg string) {
	// A browser that already holds a login token keeps it: a second tab, or
	// a request for a resource that redirected here, must not invalidate
	// the form it is showing.
	token := newToken()
	if c, err := r.Cookie(loginCookie); err == nil && len(c.Value) == len(token) && status == http.StatusOK {
		token = c.Value
	}
	http.SetCookie(w, s.cookie(loginCookie, token, loginTTL))
	s.render(w, r, status, "login", &view{Title: "Log in", CSRF: token, Error: msg})
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if !s.limitForm(w, r, maxFormBody) {
		return
	}
	c, err := r.Cookie(loginCookie)
	if err != nil || c.Value == "" || subtle.ConstantTimeCompare([]byte(c.Value), []byte(r.PostFormValue(csrfField))) != 1 {
		s.renderLogin(w, r, http.StatusForbidden, "The login form had expired. Please try again.")
		return
	}
	user, password := r.PostFormValue("user"), r.PostFormValue("password")
	if !s.checkPassword(user, password) {
		s.report(r, "admin login failed")
		s.renderLogin(w, r, http.StatusUnauthorized, "Wrong user name or password.")
		return
	}
	ttl := s.cfg.Load().Admin.SessionTimeout
	token, _ := s.sessions.create(user, ttl)
	http.SetCookie(w, s.cookie(loginCookie, "", -1))
	http.SetCookie(w, s.cookie(sessionCookie, token, ttl))
	s.log.Info("admin logged in", "user", user, "client", clientIP(r))
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	a := authOf(r)
	s.sessions.remove(a.token)
	http.SetCookie(w, s.cookie(sessionCookie, "", -1))
	s.log.Info("admin logged out", "user", a.user, "client", clientIP(r))
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// count is the number of sessions in force.
func (ss *sessions) count() int {
	now := ss.now()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	n := 0
	for _, v := range ss.m {
		if now.Before(v.expires) {
			n++
		}
	}
	return n
}
