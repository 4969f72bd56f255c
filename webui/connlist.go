package webui

import (
	"cmp"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// Connection is a live connection in GET /api/connections and on the
// connections page.
type Connection struct {
	ID       uint64    `json:"id"`
	Client   string    `json:"client"`
	Type     string    `json:"type"`
	Service  string    `json:"service"`
	Target   string    `json:"target"`
	Started  time.Time `json:"started"`
	Duration float64   `json:"duration_seconds"`
	BytesIn  int64     `json:"bytes_in"`
	BytesOut int64     `json:"bytes_out"`
	// Identity is who the client said it is: SIP address of record, LDAP
	// bind name, H.323 alias and gatekeeper ID, HTTP Host. Unverified.
	Identity         string `json:"identity"`
	TLSVersion       string `json:"tls_version"` // "" on plain connections
	SNI              string `json:"sni"`
	ClientCN         string `json:"client_cn"`
	ClientCNVerified bool   `json:"client_cn_verified"` // chains to tls.client_cas
	TargetTLS        bool   `json:"target_tls"`         // gatehouse speaks TLS to the target
}

// ConnQuery selects a page of the live connections.
type ConnQuery struct {
	Sort          string // one of connSorts; "" is started
	Desc          bool
	Q             string // every word must be in client, type, service, target, identity, TLS version, SNI or client CN
	Type          string // "" for every type
	Service       string // "" for every service; compared case-insensitively
	Offset, Limit int
}

// ConnPage is the body of GET /api/connections.
type ConnPage struct {
	Open        int            `json:"open"`     // every live connection
	Matching    int            `json:"matching"` // of them, those the query selects
	Offset      int            `json:"offset"`
	Limit       int            `json:"limit"`
	Sort        string         `json:"sort"`
	Order       string         `json:"order"` // asc or desc
	Connections []Connection   `json:"connections"`
	ByService   []ServiceCount `json:"by_service"` // open connections per service and type, over all
	Query       ConnQuery      `json:"-"`
}

// ServiceCount is the number of open connections of one service and type.
type ServiceCount struct {
	Service string `json:"service"` // "" before routing
	Type    string `json:"type"`
	Open    int    `json:"open"`
}

// connSorts are the columns a page can be sorted by: a text key (compared
// in lower case, computed once per connection rather than per comparison)
// or a number.
var connSorts = map[string]struct {
	text func(c *proxy.ConnStatus) string
	num  func(c *proxy.ConnStatus) int64
}{
	"started": {num: func(c *proxy.ConnStatus) int64 { return c.Started.UnixNano() }},
	"client": {text: func(c *proxy.ConnStatus) string {
		return string(c.Client.Addr().AsSlice()) + string(rune(c.Client.Port()))
	}},
	"type":      {text: func(c *proxy.ConnStatus) string { return c.Type }},
	"service":   {text: func(c *proxy.ConnStatus) string { return strings.ToLower(c.Service) }},
	"target":    {text: func(c *proxy.ConnStatus) string { return c.Target }},
	"identity":  {text: func(c *proxy.ConnStatus) string { return strings.ToLower(c.Identity) }},
	"tls":       {text: func(c *proxy.ConnStatus) string { return c.TLSVersion }},
	"bytes_in":  {num: func(c *proxy.ConnStatus) int64 { return c.BytesIn }},
	"bytes_out": {num: func(c *proxy.ConnStatus) int64 { return c.BytesOut }},
}

const (
	defaultConnLimit = 100
	maxConnLimit     = 1000
)

// parseConnQuery reads a ConnQuery from a page's or the API's query
// string; ok is false for a sort column or order that does not exist.
func parseConnQuery(v url.Values) (ConnQuery, bool) {
	q := ConnQuery{Sort: v.Get("sort"), Q: v.Get("q"), Type: v.Get("type"), Service: v.Get("service"), Limit: defaultConnLimit}
	if q.Sort == "" {
		q.Sort = "started"
	}
	if _, ok := connSorts[q.Sort]; !ok {
		return q, false
	}
	switch v.Get("order") {
	case "", "asc":
	case "desc":
		q.Desc = true
	default:
		return q, false
	}
	if n, err := strconv.Atoi(v.Get("limit")); err == nil && n > 0 {
		q.Limit = min(n, maxConnLimit)
	}
	if n, err := strconv.Atoi(v.Get("offset")); err == nil && n > 0 {
		q.Offset = n
	}
	return q, true
}

// matches reports whether c has every one of words (lower case).
func matches(c *proxy.ConnStatus, words []string) bool {
	if len(words) == 0 {
		return true
	}
	hay := strings.ToLower(strings.Join([]string{c.Client.String(), c.Type, c.Service, c.Target, c.Identity, c.TLSVersion, c.SNI, c.ClientCN}, " "))
	for _, w := range words {
		if !strings.Contains(hay, w) {
			return false
		}
	}
	return true
}

// listConns filters, sorts and pages list; only the page is converted.
func listConns(list []proxy.ConnStatus, q ConnQuery, now time.Time) ConnPage {
	page := ConnPage{Open: len(list), Offset: q.Offset, Limit: q.Limit, Sort: q.Sort, Order: "asc", Query: q,
		Connections: []Connection{}, ByService: byService(list)}
	if q.Desc {
		page.Order = "desc"
	}
	words := strings.Fields(strings.ToLower(q.Q))
	type keyed struct {
		c    *proxy.ConnStatus
		text string
		num  int64
	}
	by := connSorts[q.Sort]
	sel := make([]keyed, 0, len(list))
	for i := range list {
		c := &list[i]
		if (q.Type == "" || c.Type == q.Type) && (q.Service == "" || strings.EqualFold(c.Service, q.Service)) && matches(c, words) {
			k := keyed{c: c}
			if by.text != nil {
				k.text = by.text(c)
			} else {
				k.num = by.num(c)
			}
			sel = append(sel, k)
		}
	}
	page.Matching = len(sel)
	slices.SortFunc(sel, func(a, b keyed) int {
		c := strings.Compare(a.text, b.text)
		if c == 0 {
			c = cmp.Compare(a.num, b.num)
		}
		if q.Desc {
			c = -c
		}
		if c == 0 {
			c = cmp.Compare(a.c.ID, b.c.ID)
		}
		return c
	})
	if q.Offset < len(sel) {
		for _, k := range sel[q.Offset:min(len(sel), q.Offset+q.Limit)] {
			page.Connections = append(page.Connections, connection(k.c, now))
		}
	}
	return page
}

func connection(c *proxy.ConnStatus, now time.Time) Connection {
	return Connection{ID: c.ID, Client: c.Client.String(), Type: c.Type, Service: c.Service, Target: c.Target,
		Started: c.Started, Duration: max(0, now.Sub(c.Started).Seconds()), BytesIn: c.BytesIn, BytesOut: c.BytesOut,
		Identity: c.Identity, TLSVersion: c.TLSVersion, SNI: c.SNI, ClientCN: c.ClientCN,
		ClientCNVerified: c.ClientCNVerified, TargetTLS: c.TargetTLS}
}

// byService counts the open connections per service and type.
func byService(list []proxy.ConnStatus) []ServiceCount {
	out := []ServiceCount{}
	for _, a := range activeByService(list) {
		out = append(out, ServiceCount{Service: a.service, Type: a.typ, Open: a.n})
	}
	slices.SortFunc(out, func(a, b ServiceCount) int {
		if c := strings.Compare(strings.ToLower(a.Service), strings.ToLower(b.Service)); c != 0 {
			return c
		}
		return strings.Compare(a.Type, b.Type)
	})
	return out
}

func (s *Server) connPage(r *http.Request) (ConnPage, bool) {
	q, ok := parseConnQuery(r.URL.Query())
	if !ok {
		return ConnPage{}, false
	}
	return listConns(s.opts.Proxy.Conns(), q, s.now()), true
}

func (s *Server) apiConnections(w http.ResponseWriter, r *http.Request) {
	page, ok := s.connPage(r)
	if !ok {
		writeError(w, http.StatusBadRequest, "sort must be one of started, client, type, service, target, identity, tls, bytes_in, bytes_out; order asc or desc")
		return
	}
	writeJSON(w, http.StatusOK, page)
}

// link is the connections page's URL for q with changes applied, for the
// sort headers and the paging links.
func (p ConnPage) Link(change ...string) string {
	v := url.Values{}
	q := p.Query
	v.Set("sort", q.Sort)
	if q.Desc {
		v.Set("order", "desc")
	}
	if q.Q != "" {
		v.Set("q", q.Q)
	}
	if q.Type != "" {
		v.Set("type", q.Type)
	}
	if q.Service != "" {
		v.Set("service", q.Service)
	}
	if q.Offset > 0 {
		v.Set("offset", strconv.Itoa(q.Offset))
	}
	for i := 0; i+1 < len(change); i += 2 {
		if change[i+1] == "" {
			v.Del(change[i])
		} else {
			v.Set(change[i], change[i+1])
		}
	}
	return "/connections?" + v.Encode()
}

// SortLink sorts by col, reversing the order when it is the sort already.
func (p ConnPage) SortLink(col string) string {
	order := ""
	if p.Sort == col && !p.Query.Desc {
		order = "desc"
	}
	return p.Link("sort", col, "order", order, "offset", "")
}

// Prev and Next are the neighbouring pages' links, "" at either end.
func (p ConnPage) Prev() string {
	if p.Offset == 0 {
		return ""
	}
	return p.Link("offset", strconv.Itoa(max(0, p.Offset-p.Limit)))
}

func (p ConnPage) Next() string {
	if p.Offset+p.Limit >= p.Matching {
		return ""
	}
	return p.Link("offset", strconv.Itoa(p.Offset+p.Limit))
}

// Last is the number of the page's last connection, for "1–100 of 20000".
func (p ConnPage) Last() int { return min(p.Matching, p.Offset+p.Limit) }
