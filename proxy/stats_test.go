package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestStatsCountWhatHappened drives real connections through every outcome
// the counters distinguish and checks each one moved exactly as it should.
func TestStatsCountWhatHappened(t *testing.T) {
	tg := newTarget(t, echoLines)
	yaml := svcYAML("pbx.example.com", tg.port(), "") +
		"  - name: down.example.com\n    target: 127.0.0.1\n    ports: {sip: " + fmt.Sprint(freePort(t)) + "}\n"
	g := &recordingGuard{blocked: map[netip.Addr]bool{netip.MustParseAddr("127.0.0.4"): true}}
	srv, addr := startProxy(t, yaml, Stream(&lineSniffer{}), g)

	served := dialFrom(t, "127.0.0.2", addr) // forwarded, stays open
	fmt.Fprint(served, "HELLO pbx.example.com\n")
	if line, err := bufio.NewReader(served).ReadString('\n'); err != nil || !strings.HasPrefix(line, "echo:") {
		t.Fatalf("served client: %q, %v", line, err)
	}
	unknown := dialFrom(t, "127.0.0.2", addr)
	fmt.Fprint(unknown, "HELLO scanner-"+strings.Repeat("x", 20)+".example\n")
	io.ReadAll(unknown)
	down := dialFrom(t, "127.0.0.2", addr)
	fmt.Fprint(down, "HELLO down.example.com\n")
	io.ReadAll(down)
	blocked := dialFrom(t, "127.0.0.4", addr)
	blocked.Read(make([]byte, 1))
	g.waitReason(t, string(ReasonUnknownService))
	g.waitReason(t, string(ReasonUnreachable))

	// The refusals are counted before the connection ends; poll until the
	// blocked connection's accept is counted too.
	var st Stats
	for deadline := time.Now().Add(10 * time.Second); ; {
		st = srv.Stats()
		if st.Accepted["sip"] == 4 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st.Accepted["sip"] != 4 || st.Blocked["sip"] != 1 {
		t.Errorf("accepted %v, blocked %v; want 4 and 1", st.Accepted, st.Blocked)
	}
	want := []ServiceStats{
		{Type: "sip", Service: "", Refused: 1},                 // the scanner's name is not kept
		{Type: "sip", Service: "down.example.com", Refused: 1}, // a failed dial counts once, as refused
		{Type: "sip", Service: "pbx.example.com", Forwarded: 1},
	}
	if fmt.Sprint(st.Services) != fmt.Sprint(want) {
		t.Errorf("services %+v\nwant %+v", st.Services, want)
	}
	if st.Reasons[ReasonUnknownService] != 1 || st.Reasons[ReasonUnreachable] != 1 {
		t.Errorf("reasons %v", st.Reasons)
	}
	if st.DialErrors["down.example.com"] != 1 {
		t.Errorf("dial errors %v", st.DialErrors)
	}
	h := st.DialLatency["pbx.example.com"]
	if h.Count != 1 || h.Buckets[len(h.Buckets)-1] != 1 || h.Sum <= 0 {
		t.Errorf("dial latency %+v", h)
	}
}

// TestStatsReasonsAreBounded: the counters hold the fixed reasons only; a
// Reason made at run time (parser detail belongs in Refusal.Detail) is
// counted as ReasonOther and cannot grow them without end.
func TestStatsReasonsAreBounded(t *testing.T) {
	s := newStats()
	for _, r := range Reasons {
		s.refuse("sip", "", r, false)
	}
	for i := range 200 {
		s.refuse("sip", "", Reason(fmt.Sprintf("parse error at byte %d", i)), false)
	}
	st := s.snapshot()
	if len(st.Reasons) != len(Reasons)+1 || st.Reasons[ReasonOther] != 200 {
		t.Fatalf("%d reasons, other %d", len(st.Reasons), st.Reasons[ReasonOther])
	}
	for _, r := range Reasons {
		if st.Reasons[r] != 1 {
			t.Fatalf("reason %q counted %d times", r, st.Reasons[r])
		}
	}
}
