package webui

import (
	"encoding/csv"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-pbx/gatehouse/proxy/gate"
)

// RefusalQuery selects from the refusal log: words to match, a time
// range, and whether repeats are grouped.
type RefusalQuery struct {
	Q     string
	Since time.Duration // 0: everything kept
	Group bool
}

// RefusalGroup is the repeats of one refusal: the same client, type,
// service, reason and subject.
type RefusalGroup struct {
	Client   string    `json:"client"`
	Type     string    `json:"type"`
	Service  string    `json:"service"`
	Reason   string    `json:"reason"`
	Subject  string    `json:"subject,omitempty"`
	Count    int       `json:"count"`
	First    time.Time `json:"first"`
	Last     time.Time `json:"last"`
	AtAccept bool      `json:"at_accept"` // refused at accept, before a byte was read
}

// parseRefusalQuery reads q, since (a duration: 15m, 1h, 24h) and group;
// ok is false for a since that is no positive duration.
func parseRefusalQuery(v url.Values) (RefusalQuery, bool) {
	q := RefusalQuery{Q: v.Get("q"), Group: v.Get("group") == "1" || v.Get("group") == "true"}
	if s := v.Get("since"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return q, false
		}
		q.Since = d
	}
	return q, true
}

// refusals returns the entries q selects, the latest first.
func (s *Server) refusals(q RefusalQuery) []gate.Entry {
	evs := s.recent(q.Q, gate.DefaultEventLogSize)
	if q.Since > 0 {
		from := s.now().Add(-q.Since)
		evs = slices.DeleteFunc(evs, func(e gate.Entry) bool { return e.Time.Before(from) })
	}
	if evs == nil {
		evs = []gate.Entry{}
	}
	return evs
}

// group folds repeats, most frequent first (the latest first among equals).
// An entry coalesced at accept brings its count and first time.
func group(evs []gate.Entry) []RefusalGroup {
	type key struct {
		client, typ, service, reason, subject string
		accept                                bool
	}
	idx := map[key]int{}
	out := []RefusalGroup{}
	for _, e := range evs { // latest first
		k := key{e.Client.String(), e.Type, e.Service, e.Reason, e.Subject, e.AtAccept}
		i, ok := idx[k]
		if !ok {
			i = len(out)
			idx[k] = i
			out = append(out, RefusalGroup{Client: k.client, Type: e.Type, Service: e.Service, Reason: e.Reason, Subject: e.Subject,
				Last: e.Time, First: e.First, AtAccept: e.AtAccept})
		}
		out[i].Count += max(e.Count, 1)
		if e.First.Before(out[i].First) {
			out[i].First = e.First
		}
	}
	slices.SortStableFunc(out, func(a, b RefusalGroup) int { return b.Count - a.Count })
	return out
}

// csvCell keeps a cell from being read as a formula by a spreadsheet:
// the subject and the service are the client's text.
func csvCell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func (s *Server) apiRefusals(w http.ResponseWriter, r *http.Request) {
	q, ok := parseRefusalQuery(r.URL.Query())
	if !ok {
		writeError(w, http.StatusBadRequest, "since must be a duration like 15m, 1h or 24h")
		return
	}
	evs := s.refusals(q)
	if limit, _ := strconv.Atoi(r.URL.Query().Get("limit")); limit > 0 && limit < len(evs) {
		evs = evs[:limit]
	}
	format := r.URL.Query().Get("format")
	if format == "csv" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="gatehouse-refusals.csv"`)
		cw := csv.NewWriter(w)
		if q.Group {
			cw.Write([]string{"count", "first", "last", "client", "type", "service", "reason", "subject", "at_accept"})
			for _, g := range group(evs) {
				cw.Write([]string{strconv.Itoa(g.Count), g.First.Format(time.RFC3339), g.Last.Format(time.RFC3339),
					g.Client, g.Type, csvCell(g.Service), g.Reason, csvCell(g.Subject), strconv.FormatBool(g.AtAccept)})
			}
		} else {
			cw.Write([]string{"time", "client", "type", "service", "reason", "subject", "count", "first", "at_accept"})
			for _, e := range evs {
				cw.Write([]string{e.Time.Format(time.RFC3339), e.Client.String(), e.Type, csvCell(e.Service), e.Reason, csvCell(e.Subject),
					strconv.Itoa(e.Count), e.First.Format(time.RFC3339), strconv.FormatBool(e.AtAccept)})
			}
		}
		cw.Flush()
		return
	}
	if format != "" && format != "json" {
		writeError(w, http.StatusBadRequest, "format must be json or csv")
		return
	}
	if format == "json" {
		w.Header().Set("Content-Disposition", `attachment; filename="gatehouse-refusals.json"`)
	}
	if q.Group {
		writeJSON(w, http.StatusOK, group(evs))
		return
	}
	writeJSON(w, http.StatusOK, evs)
}

// exportLink is the API's URL for the page's query in format.
func (q RefusalQuery) ExportLink(format string) string {
	v := url.Values{"format": {format}}
	if q.Q != "" {
		v.Set("q", q.Q)
	}
	if q.Since > 0 {
		v.Set("since", q.Since.String())
	}
	if q.Group {
		v.Set("group", "1")
	}
	return "/api/refusals?" + v.Encode()
}
