package webui

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestTargetHealthInStatusAndMetrics: the PBX's web server is up, then
// stops; /api/status and /metrics say so, and requests to it get 503.
func TestTargetHealthInStatusAndMetrics(t *testing.T) {
	a := newAppliance(t, "")
	addr := a.target.Listener.Addr().String()
	state := func() string {
		code, body := a.basic("GET", "/api/status", "", nil)
		if code != http.StatusOK {
			t.Fatalf("status: %d %s", code, body)
		}
		var st struct {
			Targets []struct {
				Addr, State, Type string
				Services          []string
			}
		}
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatal(err)
		}
		for _, tg := range st.Targets {
			if tg.Addr == addr && tg.Type == "http" && strings.Join(tg.Services, ",") == "hq.example.com" {
				return tg.State
			}
		}
		t.Fatalf("no target %s in %s", addr, body)
		return ""
	}
	metric := `gatehouse_target_up{service="hq.example.com",target="` + addr + `",type="http"} `
	waitFor(t, "target up", func() bool { return state() == "up" })
	if _, body := a.basic("GET", "/metrics", "", nil); !strings.Contains(body, metric+"1") {
		t.Errorf("metrics lack %s1", metric)
	}
	a.target.Close()
	waitFor(t, "target down", func() bool { return state() == "down" })
	if _, body := a.basic("GET", "/metrics", "", nil); !strings.Contains(body, metric+"0") {
		t.Errorf("metrics lack %s0", metric)
	}
	if st := a.httpGet("127.0.0.1", "/PBX0/MY"); st != http.StatusServiceUnavailable {
		t.Errorf("request while the target is down: %d, want 503", st)
	}
}
