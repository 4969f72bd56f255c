package webui

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-pbx/gatehouse/blacklist"
	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/health"
	"github.com/gatehouse-pbx/gatehouse/proxy"
	"github.com/gatehouse-pbx/gatehouse/proxy/gate"
)

// Request body limits: an address with a note is far below the first; a
// configuration file with many services below the second.
const (
	maxJSONBody   = 16 << 10
	maxConfigBody = 1 << 20
	maxFormBody   = 64 << 10
	// The configuration page posts the file inside a form, escaped.
	maxConfigFormBody = 4 * maxConfigBody
)

// yamlTypes are the content types POST /api/config accepts. text/plain is
// not one of them: a form on another site can send it without a CORS
// preflight.
var yamlTypes = []string{"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// apiError is the body of every API error.
type apiError struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, apiError{msg})
}

// readBody checks the content type against types and reads at most max
// bytes, answering 415 or 413 itself when the request is out of bounds.
func readBody(w http.ResponseWriter, r *http.Request, max int64, types ...string) ([]byte, bool) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	ok := false
	for _, t := range types {
		ok = ok || (err == nil && mt == t)
	}
	if !ok {
		writeError(w, http.StatusUnsupportedMediaType, "Content-Type must be "+strings.Join(types, " or "))
		return nil, false
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		if _, tooLarge := errors.AsType[*http.MaxBytesError](err); tooLarge {
			writeError(w, http.StatusRequestEntityTooLarge, "request body larger than "+strconv.FormatInt(max, 10)+" bytes")
		} else {
			writeError(w, http.StatusBadRequest, "reading the request body: "+err.Error())
		}
		return nil, false
	}
	return data, true
}

// limitForm parses a form body of at most max bytes, answering 415, 413 or
// 400 itself.
func (s *Server) limitForm(w http.ResponseWriter, r *http.Request, max int64) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/x-www-form-urlencoded" {
		http.Error(w, "Content-Type must be application/x-www-form-urlencoded", http.StatusUnsupportedMediaType)
		return false
	}
	r.Body = http.MaxBytesReader(w, r.Body, max)
	if err := r.ParseForm(); err != nil {
		if _, tooLarge := errors.AsType[*http.MaxBytesError](err); tooLarge {
			http.Error(w, "Request body too large.", http.StatusRequestEntityTooLarge)
		} else {
			http.Error(w, "Bad form: "+err.Error(), http.StatusBadRequest)
		}
		return false
	}
	return true
}

// Status is the body of GET /api/status.
type Status struct {
	Version    string                  `json:"version"`
	Started    time.Time               `json:"started"`
	Uptime     float64                 `json:"uptime_seconds"`
	ConfigFile string                  `json:"config_file"`
	Listeners  []Listener              `json:"listeners"`
	Services   []ServiceStatus         `json:"services"`
	Active     int                     `json:"connections_active"`
	Accepted   uint64                  `json:"connections_accepted"`
	Refusals   map[proxy.Reason]uint64 `json:"refusals"`
	Blacklist  blacklist.Stats         `json:"blacklist"`
	Gate       gate.Stats              `json:"gate"`
	TURN       *TURNStatus             `json:"turn"`
	Admin      AdminStatus             `json:"admin"`
	// Targets is every target port with its health, by address.
	Targets  []health.Target      `json:"targets"`
	Counters []proxy.ServiceStats `json:"-"`
}

// Listener is one address gatehouse accepts on.
type Listener struct {
	Type string `json:"type"`
	Addr string `json:"addr"`
}

// ServiceStatus is a configured service with its counters, summed over its
// service types.
type ServiceStatus struct {
	Name      string   `json:"name"`
	Target    string   `json:"target"`
	Types     []string `json:"types"`
	Forwarded uint64   `json:"forwarded"`
	Refused   uint64   `json:"refused"`
	Active    int      `json:"active"`
}

// TURNStatus is the TURN server's state; null when TURN is off.
type TURNStatus struct {
	Listen       string `json:"listen"`
	Allocations  int    `json:"allocations"`
	Created      uint64 `json:"allocations_created"`
	AuthFailures uint64 `json:"auth_failures"`
	RelayedBytes uint64 `json:"relayed_bytes"`
}

// AdminStatus describes the admin listener itself.
type AdminStatus struct {
	Listen        string `json:"listen"`
	Users         int    `json:"users"`
	MetricsPublic bool   `json:"metrics_public"`
	Fingerprint   string `json:"certificate_sha256"`
}

func (s *Server) status() Status {
	cfg := s.cfg.Load()
	p := s.opts.Proxy
	st := p.Stats()
	conns := p.Conns()
	out := Status{
		Version: s.opts.Version, Started: s.started, Uptime: s.now().Sub(s.started).Seconds(),
		ConfigFile: cfg.File, Active: len(conns), Refusals: st.Reasons,
		Blacklist: s.opts.Blacklist.Stats(), Gate: s.gate().Stats(), Listeners: []Listener{}, Services: []ServiceStatus{},
		Counters: st.Services,
	}
	for _, n := range st.Accepted {
		out.Accepted += n
	}
	for _, t := range configs.ServiceTypes {
		if a := p.Addr(t.Name); a != nil {
			out.Listeners = append(out.Listeners, Listener{t.Name, a.String()})
		}
	}
	byName := map[string]*ServiceStatus{}
	for _, svc := range cfg.Services {
		ss := ServiceStatus{Name: svc.Name, Target: svc.Target, Types: []string{}}
		for _, t := range configs.ServiceTypes {
			if _, ok := svc.Port(t.Name); ok {
				ss.Types = append(ss.Types, t.Name)
			}
		}
		out.Services = append(out.Services, ss)
	}
	for i := range out.Services {
		byName[strings.ToLower(out.Services[i].Name)] = &out.Services[i]
	}
	for _, c := range st.Services {
		if ss := byName[strings.ToLower(c.Service)]; ss != nil {
			ss.Forwarded += c.Forwarded
			ss.Refused += c.Refused
		}
	}
	for _, c := range conns {
		if ss := byName[strings.ToLower(c.Service)]; ss != nil {
			ss.Active++
		}
	}
	if t := s.opts.TURN(); t != nil {
		ts := t.Stats()
		out.TURN = &TURNStatus{Listen: cfg.TURN.Listen, Allocations: ts.AllocationsActive, Created: ts.Allocations,
			AuthFailures: ts.AuthFailures, RelayedBytes: ts.RelayedBytes}
	}
	out.Targets = []health.Target{}
	if s.opts.Health != nil {
		out.Targets = s.opts.Health.Targets()
	}
	out.Admin = AdminStatus{Listen: s.Addr().String(), Users: len(cfg.Admin.Users), MetricsPublic: cfg.Admin.MetricsPublic}
	if certs := *s.certs.Load(); len(certs) > 0 {
		out.Admin.Fingerprint = Fingerprint(certs[0].Leaf)
	}
	return out
}

func (s *Server) apiStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.status())
}

func (s *Server) apiDropConnection(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, "connection id must be a number")
		return
	}
	if !s.opts.Proxy.Drop(id) {
		writeError(w, http.StatusNotFound, "no connection "+strconv.FormatUint(id, 10))
		return
	}
	s.log.Info("connection dropped by an administrator", "id", id, "user", authOf(r).user)
	writeJSON(w, http.StatusOK, map[string]any{"dropped": id})
}

func (s *Server) apiAgents(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.tunnels())
}

func (s *Server) apiDisconnectAgent(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, "tunnel id must be a number")
		return
	}
	if s.opts.Agents == nil || !s.opts.Agents.Disconnect(id) {
		writeError(w, http.StatusNotFound, "no tunnel "+strconv.FormatUint(id, 10))
		return
	}
	s.log.Info("agent tunnel disconnected by an administrator", "id", id, "user", authOf(r).user)
	writeJSON(w, http.StatusOK, map[string]any{"disconnected": id})
}

// entryRequest is the body of POST /api/blacklist and /api/whitelist.
type entryRequest struct {
	IP   string `json:"ip"`   // an address or a network in CIDR form
	Note string `json:"note"` // optional, shown in the lists
}

// parsePrefix reads an address (a single-address network) or a CIDR network.
func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, errors.New(strconv.Quote(s) + " is not an address or a network in CIDR form")
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, errors.New(strconv.Quote(s) + " is not an address or a network in CIDR form")
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// listStatus maps the blacklist's errors to HTTP statuses.
func listStatus(err error) int {
	switch {
	case errors.Is(err, blacklist.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, blacklist.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, blacklist.ErrExists), errors.Is(err, blacklist.ErrFromConfig), errors.Is(err, blacklist.ErrCovered):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

func (s *Server) readEntry(w http.ResponseWriter, r *http.Request) (netip.Prefix, string, bool) {
	data, ok := readBody(w, r, maxJSONBody, "application/json")
	if !ok {
		return netip.Prefix{}, "", false
	}
	var req entryRequest
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "body must be {\"ip\": \"address or network\", \"note\": \"optional\"}: "+err.Error())
		return netip.Prefix{}, "", false
	}
	p, err := parsePrefix(req.IP)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return netip.Prefix{}, "", false
	}
	return p, req.Note, true
}

func (s *Server) apiBlacklist(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := blacklist.Filter{Address: q.Get("address"), Service: q.Get("service"), Blocked: q.Get("blocked") == "true"}
	writeJSON(w, http.StatusOK, s.opts.Blacklist.Entries(f))
}

func (s *Server) apiBlacklistAdd(w http.ResponseWriter, r *http.Request) {
	p, note, ok := s.readEntry(w, r)
	if !ok {
		return
	}
	if err := s.opts.Blacklist.AddManual(p, note); err != nil {
		writeError(w, listStatus(err), err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"blocked": p.String()})
}

// removeBlacklist unblocks ip: a network is a manual entry to remove; an
// address is a client to forget (its automatic entry and manual entries
// for exactly it).
func (s *Server) removeBlacklist(value string) (string, error) {
	p, err := parsePrefix(value)
	if err != nil {
		return "", err
	}
	if p.IsSingleIP() {
		return p.Addr().String(), s.opts.Blacklist.Remove(p.Addr())
	}
	return p.String(), s.opts.Blacklist.RemoveManual(p)
}

func (s *Server) apiBlacklistRemove(w http.ResponseWriter, r *http.Request) {
	removed, err := s.removeBlacklist(r.URL.Query().Get("ip"))
	if err != nil {
		writeError(w, errStatus(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"removed": removed})
}

func (s *Server) apiPromote(w http.ResponseWriter, r *http.Request) {
	p, _, ok := s.readEntry(w, r)
	if !ok {
		return
	}
	if !p.IsSingleIP() {
		writeError(w, http.StatusBadRequest, "promote takes an address, not a network")
		return
	}
	if err := s.opts.Blacklist.Promote(p.Addr()); err != nil {
		writeError(w, listStatus(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"promoted": p.Addr().String()})
}

// errStatus is listStatus, with parse errors as 400.
func errStatus(err error) int {
	if st := listStatus(err); st != http.StatusInternalServerError {
		return st
	}
	if strings.Contains(err.Error(), "is not an address") {
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

func (s *Server) apiWhitelist(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.opts.Blacklist.Whitelist())
}

func (s *Server) apiWhitelistAdd(w http.ResponseWriter, r *http.Request) {
	p, note, ok := s.readEntry(w, r)
	if !ok {
		return
	}
	if err := s.opts.Blacklist.AddWhitelist(p, note); err != nil {
		writeError(w, listStatus(err), err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"whitelisted": p.String()})
}

func (s *Server) apiWhitelistRemove(w http.ResponseWriter, r *http.Request) {
	p, err := parsePrefix(r.URL.Query().Get("ip"))
	if err == nil {
		err = s.opts.Blacklist.RemoveWhitelist(p)
	}
	if err != nil {
		writeError(w, errStatus(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"removed": p.String()})
}

func (s *Server) apiConfig(w http.ResponseWriter, r *http.Request) {
	data, err := s.readConfig(r.URL.Query().Get("backup"))
	switch {
	case errors.Is(err, errNoFile), errors.Is(err, errBadBackup):
		writeError(w, http.StatusNotFound, err.Error())
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, "reading the configuration file failed")
		s.log.Error("reading the configuration file", "config", s.cfg.Load().File, "err", err)
		return
	}
	w.Header().Set("Content-Type", "application/yaml; charset=utf-8")
	w.Write(data)
}

func (s *Server) apiConfigBackups(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.backups())
}

func (s *Server) apiConfigApply(w http.ResponseWriter, r *http.Request) {
	data, ok := readBody(w, r, maxConfigBody, yamlTypes...)
	if !ok {
		return
	}
	problems, err := s.applyConfig(data, authOf(r).user)
	switch {
	case problems != nil:
		writeJSON(w, http.StatusUnprocessableEntity, problems)
	case errors.Is(err, errNoFile):
		writeError(w, http.StatusConflict, err.Error())
	case err != nil:
		// Valid, but it could not be put in force (a port in use, a file
		// that cannot be written): the caller can fix that and retry.
		writeJSON(w, http.StatusUnprocessableEntity, []ConfigError{{Message: err.Error()}})
	default:
		writeJSON(w, http.StatusOK, map[string]any{"applied": true, "services": len(s.cfg.Load().Services)})
	}
}
