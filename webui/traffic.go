package webui

import (
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// Traffic is the body of GET /api/traffic: the proxy's history over one
// range, its series filtered by service and type, and their sum.
type Traffic struct {
	Range   string         `json:"range"` // hour or day
	Step    int            `json:"step_seconds"`
	Start   time.Time      `json:"start"` // the first slot's start
	Total   proxy.Series   `json:"total"` // the sum of Series (type and service empty)
	Series  []proxy.Series `json:"series"`
	Service string         `json:"service,omitempty"` // the filters in force
	Type    string         `json:"type,omitempty"`
}

// traffic answers range "hour" (per second) or "day" (per minute); service
// and type filter the series when not empty. ok is false for a range,
// type that does not exist.
func (s *Server) traffic(rng, service, typ string) (Traffic, bool) {
	step := time.Second
	switch rng {
	case "", "hour":
		rng = "hour"
	case "day":
		step = time.Minute
	default:
		return Traffic{}, false
	}
	if _, known := configs.LookupType(typ); typ != "" && !known {
		return Traffic{}, false
	}
	h := s.opts.Proxy.History(step)
	out := Traffic{Range: rng, Step: int(step / time.Second), Start: h.Start, Series: []proxy.Series{}, Service: service, Type: typ}
	n := proxy.SecondSlots
	if step == time.Minute {
		n = proxy.MinuteSlots
	}
	out.Total = proxy.Series{Forwarded: make([]uint32, n), Refused: make([]uint32, n), Blocked: make([]uint32, n)}
	for _, sr := range h.Series {
		if (service != "" && !strings.EqualFold(service, sr.Service)) || (typ != "" && typ != sr.Type) {
			continue
		}
		out.Series = append(out.Series, sr)
		for i := range sr.Forwarded {
			out.Total.Forwarded[i] += sr.Forwarded[i]
			out.Total.Refused[i] += sr.Refused[i]
			out.Total.Blocked[i] += sr.Blocked[i]
		}
	}
	return out, true
}

func (s *Server) apiTraffic(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	t, ok := s.traffic(q.Get("range"), q.Get("service"), q.Get("type"))
	if !ok {
		writeError(w, http.StatusBadRequest, "range must be hour or day, and type a service type")
		return
	}
	writeJSON(w, http.StatusOK, t)
}
