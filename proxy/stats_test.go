package proxy

import (
	"fmt"
	"testing"
)

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
