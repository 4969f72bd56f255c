package webui

import (
	"bytes"
	"cmp"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-pbx/gatehouse/blacklist"
	"github.com/gatehouse-pbx/gatehouse/cluster"
	"github.com/gatehouse-pbx/gatehouse/proxy"
	"github.com/gatehouse-pbx/gatehouse/proxy/gate"
	"github.com/gatehouse-pbx/gatehouse/tunnel"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// view is what every page template gets.
type view struct {
	Title  string
	Nav    string // the menu entry to highlight
	User   string
	CSRF   string
	Flash  string
	Error  string
	Status Status

	Conns     ConnPage
	Agents    []tunnel.Status
	Entries   []blacklist.Entry
	Whitelist []blacklist.WhitelistEntry
	Events    []gate.Entry
	Query     string
	Reasons   []reasonCount // refusals by reason, most first (dashboard)
	Refusals  RefusalQuery  // the refusal page's query
	Groups    []RefusalGroup

	ConfigText string
	Problems   []ConfigError
	Checked    bool       // the configuration text was checked and is valid
	Diffed     bool       // Diff was computed: against the running file
	Diff       []DiffLine // nil: no change
	Backups    []Backup
	Backup     int // the backup loaded into the editor, 0 for the running file
	Certs      []CertRow
	Cluster    *cluster.Status // nodes page
	Nodes      []NodeRow
	Clustered  bool // the menu shows Nodes
	Now        time.Time
}

var funcs = template.FuncMap{
	"duration": func(d time.Duration) string {
		d = d.Round(time.Second)
		if d >= time.Hour {
			return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
		}
		return d.String()
	},
	"since": func(now, t time.Time) time.Duration { return now.Sub(t) },
	"until": func(now, t time.Time) time.Duration { return t.Sub(now) },
	"secs":  func(f float64) time.Duration { return time.Duration(f * float64(time.Second)) },
	"bytes": func(n int64) string {
		switch {
		case n >= 1<<30:
			return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
		case n >= 1<<20:
			return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
		case n >= 1<<10:
			return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
		}
		return strconv.FormatInt(n, 10) + " B"
	},
	"clock": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.Local().Format("2006-01-02 15:04:05 MST") // the zone: an operator compares with logs and other sites
	},
	"join": strings.Join,
	"add":  func(a, b int) int { return a + b },
	"list": func(s ...string) []string { return s },
}

// pages are parsed once: each page template with the shared layout.
var pages = func() map[string]*template.Template {
	layout := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html"))
	out := map[string]*template.Template{}
	names, _ := fs.Glob(templateFS, "templates/*.html")
	for _, n := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if name == "layout" {
			continue
		}
		out[name] = template.Must(template.Must(layout.Clone()).ParseFS(templateFS, n))
	}
	return out
}()

// render writes page name with v, buffered so that a template error gives
// a clean 500 instead of half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, v *view) {
	if a := authOf(r); a != nil && a.session != nil {
		v.User, v.CSRF = a.user, a.session.csrf
		if v.Flash == "" {
			v.Flash = s.sessions.takeFlash(a.session)
		}
	}
	v.Now = s.now()
	v.Clustered = s.opts.Cluster != nil
	var buf bytes.Buffer
	if err := pages[name].ExecuteTemplate(&buf, "layout.html", v); err != nil {
		s.log.Error("admin page", "page", name, "err", err)
		http.Error(w, "Internal Server Error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// back redirects to the page the form was on, with a message for it.
func (s *Server) back(w http.ResponseWriter, r *http.Request, to, msg string) {
	s.sessions.setFlash(authOf(r).session, msg)
	http.Redirect(w, r, to, http.StatusSeeOther)
}

func (s *Server) dashboard(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	st := s.status()
	s.render(w, r, http.StatusOK, "dashboard", &view{Title: "Dashboard", Nav: "dashboard", Status: st,
		Events: s.recent("", 10), Reasons: byCount(st.Refusals), Error: s.adminWarning(r)})
}

// reasonCount is one line of the dashboard's refusals by reason.
type reasonCount struct {
	Reason proxy.Reason
	N      uint64
}

// byCount lists the reasons with refusals, most first.
func byCount(m map[proxy.Reason]uint64) []reasonCount {
	out := make([]reasonCount, 0, len(m))
	for r, n := range m {
		if n > 0 {
			out = append(out, reasonCount{r, n})
		}
	}
	slices.SortFunc(out, func(a, b reasonCount) int {
		if a.N != b.N {
			return cmp.Compare(b.N, a.N)
		}
		return strings.Compare(string(a.Reason), string(b.Reason))
	})
	return out
}

// adminWarning says so when the address the administrator uses has
// suspicious requests counted against it: at half the threshold, before a
// few more failed logins lock the administrator out.
func (s *Server) adminWarning(r *http.Request) string {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return ""
	}
	ip := ap.Addr().Unmap()
	threshold := s.cfg.Load().Blacklist.Threshold
	for _, e := range s.opts.Blacklist.Entries(blacklist.Filter{Address: ip.String()}) {
		if e.Prefix.Contains(ip) && !e.Whitelisted && !e.Manual && e.Count > 0 && 2*e.Count >= threshold {
			return fmt.Sprintf("Your address %s has %d suspicious requests in the last minute; at %d more it is blocked, the admin UI included. Whitelist it if it is yours.",
				ip, e.Count, threshold+1-e.Count)
		}
	}
	return ""
}

func (s *Server) recent(q string, limit int) []gate.Entry {
	if s.opts.Events == nil {
		return nil
	}
	return s.opts.Events.Recent(q, limit)
}

func (s *Server) connectionsPage(w http.ResponseWriter, r *http.Request) {
	page, ok := s.connPage(r)
	if !ok {
		page = listConns(s.opts.Proxy.Conns(), ConnQuery{Sort: "started", Limit: defaultConnLimit}, s.now())
	}
	s.render(w, r, http.StatusOK, "connections", &view{Title: "Connections", Nav: "connections", Conns: page})
}

func (s *Server) dropConnection(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PostFormValue("id"), 10, 64)
	if err != nil || !s.opts.Proxy.Drop(id) {
		s.back(w, r, "/connections", "That connection has already ended.")
		return
	}
	s.log.Info("connection dropped by an administrator", "id", id, "user", authOf(r).user)
	s.back(w, r, "/connections", fmt.Sprintf("Connection %d dropped.", id))
}

// tunnels lists the agent tunnels, none without Options.Agents.
func (s *Server) tunnels() []tunnel.Status {
	if s.opts.Agents == nil {
		return []tunnel.Status{}
	}
	return s.opts.Agents.Tunnels()
}

func (s *Server) agentsPage(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "agents", &view{Title: "Agents", Nav: "agents", Agents: s.tunnels(), Now: s.now()})
}

func (s *Server) disconnectAgent(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PostFormValue("id"), 10, 64)
	if err != nil || s.opts.Agents == nil || !s.opts.Agents.Disconnect(id) {
		s.back(w, r, "/agents", "That tunnel has already ended.")
		return
	}
	s.log.Info("agent tunnel disconnected by an administrator", "id", id, "user", authOf(r).user)
	s.back(w, r, "/agents", fmt.Sprintf("Tunnel %d disconnected; its agent will dial again.", id))
}

func (s *Server) blacklistPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query().Get("q")
	s.render(w, r, http.StatusOK, "blacklist", &view{Title: "Blacklist", Nav: "blacklist", Query: q,
		Entries: s.opts.Blacklist.Entries(blacklist.Filter{Address: q, Limit: 1000})})
}

func (s *Server) blacklistAdd(w http.ResponseWriter, r *http.Request) {
	p, err := parsePrefix(r.PostFormValue("ip"))
	if err == nil {
		err = s.opts.Blacklist.AddManual(p, r.PostFormValue("note"))
	}
	if err != nil {
		s.back(w, r, "/blacklist", "Not added: "+err.Error())
		return
	}
	s.back(w, r, "/blacklist", p.String()+" is blocked until removed.")
}

func (s *Server) blacklistRemove(w http.ResponseWriter, r *http.Request) {
	removed, err := s.removeBlacklist(r.PostFormValue("ip"))
	if err != nil {
		s.back(w, r, "/blacklist", "Not removed: "+err.Error())
		return
	}
	s.back(w, r, "/blacklist", removed+" removed from the blacklist.")
}

func (s *Server) blacklistPromote(w http.ResponseWriter, r *http.Request) {
	p, err := parsePrefix(r.PostFormValue("ip"))
	if err == nil {
		err = s.opts.Blacklist.Promote(p.Addr())
	}
	if err != nil {
		s.back(w, r, "/blacklist", "Not promoted: "+err.Error())
		return
	}
	s.back(w, r, "/blacklist", p.Addr().String()+" moved to the whitelist.")
}

func (s *Server) whitelistPage(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "whitelist", &view{Title: "Whitelist", Nav: "whitelist", Whitelist: s.opts.Blacklist.Whitelist()})
}

func (s *Server) whitelistAdd(w http.ResponseWriter, r *http.Request) {
	p, err := parsePrefix(r.PostFormValue("ip"))
	if err == nil {
		err = s.opts.Blacklist.AddWhitelist(p, r.PostFormValue("note"))
	}
	if err != nil {
		s.back(w, r, "/whitelist", "Not added: "+err.Error())
		return
	}
	s.back(w, r, "/whitelist", p.String()+" is never blocked now.")
}

func (s *Server) whitelistRemove(w http.ResponseWriter, r *http.Request) {
	p, err := parsePrefix(r.PostFormValue("ip"))
	if err == nil {
		err = s.opts.Blacklist.RemoveWhitelist(p)
	}
	if err != nil {
		s.back(w, r, "/whitelist", "Not removed: "+err.Error())
		return
	}
	s.back(w, r, "/whitelist", p.String()+" removed from the whitelist.")
}

func (s *Server) refusalsPage(w http.ResponseWriter, r *http.Request) {
	rq, ok := parseRefusalQuery(r.URL.Query())
	v := &view{Title: "Refused requests", Nav: "refusals", Query: rq.Q, Refusals: rq}
	if !ok {
		v.Error = "“since” must be a duration like 15m, 1h or 24h."
	}
	evs := s.refusals(rq)
	if rq.Group {
		v.Groups = group(evs)
	} else {
		v.Events = evs[:min(len(evs), 500)]
	}
	s.render(w, r, http.StatusOK, "refusals", v)
}

func (s *Server) configPage(w http.ResponseWriter, r *http.Request) {
	v := &view{Title: "Configuration", Nav: "config", Backups: s.backups()}
	backup := r.URL.Query().Get("backup")
	data, err := s.readConfig(backup)
	switch {
	case err == nil:
		v.ConfigText = string(data)
		if backup != "" && backup != "0" {
			v.Backup, _ = strconv.Atoi(backup)
			running, _ := s.readConfig("")
			v.Diffed, v.Diff = true, diffLines(string(running), v.ConfigText)
			v.Flash = "Backup " + backup + " is in the editor, not in force: check the changes below, then apply it to restore it."
		}
	case errors.Is(err, errNoFile), errors.Is(err, errBadBackup):
		v.Error = err.Error()
	default:
		v.Error = "The configuration file cannot be read: " + err.Error()
	}
	s.render(w, r, http.StatusOK, "config", v)
}

// configSubmit checks the posted configuration and, when asked, applies it.
// Problems are shown with the text as submitted, so nothing typed is lost.
func (s *Server) configSubmit(w http.ResponseWriter, r *http.Request) {
	text := strings.ReplaceAll(r.PostFormValue("config"), "\r\n", "\n") // browsers send CRLF
	v := &view{Title: "Configuration", Nav: "config", ConfigText: text, Backups: s.backups()}
	if r.PostFormValue("action") != "apply" {
		if _, v.Problems = s.checkConfig([]byte(text)); v.Problems == nil {
			v.Checked = true
		}
		// What applying would change, valid or not.
		if running, err := s.readConfig(""); err == nil {
			v.Diffed, v.Diff = true, diffLines(string(running), text)
		}
		status := http.StatusOK
		if v.Problems != nil {
			status = http.StatusUnprocessableEntity
		}
		s.render(w, r, status, "config", v)
		return
	}
	problems, err := s.applyConfig([]byte(text), authOf(r).user)
	switch {
	case problems != nil:
		v.Problems = problems
	case err != nil:
		v.Error = "Not applied: " + err.Error()
	default:
		s.back(w, r, "/config", "Configuration applied and saved; the previous version is kept as "+s.cfg.Load().File+".1.")
		return
	}
	s.render(w, r, http.StatusUnprocessableEntity, "config", v)
}

// routes maps every endpoint; README.md documents each one.
func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		// Out of file descriptors, the listeners back off and recover by
		// themselves; the probe says so meanwhile, so that monitoring sees it.
		if ex, msg := s.gate().Exhausted(); ex {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "accept failing: %s\n", msg)
			return
		}
		if bad, why := s.clusterHealth(); bad {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, why)
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/svg+xml")
		w.Write(favicon)
	})
	mux.HandleFunc("GET /login", s.loginForm)
	mux.HandleFunc("POST /login", s.login)
	mux.Handle("POST /logout", s.page(s.logout))

	mux.Handle("GET /", s.page(s.dashboard))
	mux.Handle("GET /connections", s.page(s.connectionsPage))
	mux.Handle("POST /connections/drop", s.page(s.dropConnection))
	mux.Handle("GET /agents", s.page(s.agentsPage))
	mux.Handle("POST /agents/disconnect", s.page(s.disconnectAgent))
	mux.Handle("GET /blacklist", s.page(s.blacklistPage))
	mux.Handle("POST /blacklist/add", s.page(s.blacklistAdd))
	mux.Handle("POST /blacklist/remove", s.page(s.blacklistRemove))
	mux.Handle("POST /blacklist/promote", s.page(s.blacklistPromote))
	mux.Handle("GET /whitelist", s.page(s.whitelistPage))
	mux.Handle("POST /whitelist/add", s.page(s.whitelistAdd))
	mux.Handle("POST /whitelist/remove", s.page(s.whitelistRemove))
	mux.Handle("GET /refusals", s.page(s.refusalsPage))
	mux.Handle("GET /certificates", s.page(s.certificatesPage))
	mux.Handle("GET /nodes", s.page(s.nodesPage))
	mux.Handle("GET /config", s.page(s.configPage))
	// The configuration form is larger than other forms: it gets its own limit.
	mux.Handle("POST /config", s.pageLimit(maxConfigFormBody, s.configSubmit))

	mux.Handle("GET /api/status", s.api(s.apiStatus))
	mux.Handle("GET /api/cluster", s.api(s.apiCluster))
	mux.Handle("GET /api/connections", s.api(s.apiConnections))
	mux.Handle("DELETE /api/connections/{id}", s.api(s.apiDropConnection))
	mux.Handle("GET /api/agents", s.api(s.apiAgents))
	mux.Handle("DELETE /api/agents/{id}", s.api(s.apiDisconnectAgent))
	mux.Handle("GET /api/blacklist", s.api(s.apiBlacklist))
	mux.Handle("POST /api/blacklist", s.api(s.apiBlacklistAdd))
	mux.Handle("DELETE /api/blacklist", s.api(s.apiBlacklistRemove))
	mux.Handle("POST /api/blacklist/promote", s.api(s.apiPromote))
	mux.Handle("GET /api/whitelist", s.api(s.apiWhitelist))
	mux.Handle("POST /api/whitelist", s.api(s.apiWhitelistAdd))
	mux.Handle("DELETE /api/whitelist", s.api(s.apiWhitelistRemove))
	mux.Handle("GET /api/refusals", s.api(s.apiRefusals))
	mux.Handle("GET /api/traffic", s.api(s.apiTraffic))
	mux.Handle("GET /api/config", s.api(s.apiConfig))
	mux.Handle("GET /api/config/backups", s.api(s.apiConfigBackups))
	mux.Handle("POST /api/config", s.api(s.apiConfigApply))
	mux.HandleFunc("GET /metrics", s.serveMetrics)
	return mux
}

// favicon is a small shield, so that browsers asking for one get it
// instead of a redirect to the login page.
var favicon = []byte(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><path d="M8 1 2 3v5c0 3.5 2.6 6.2 6 7 3.4-.8 6-3.5 6-7V3z" fill="#1f5fbf"/></svg>`)
