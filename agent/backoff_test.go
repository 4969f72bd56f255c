package agent

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	b := DefaultBackoff()
	// Failed dials: 1 s doubling to 30 s, each drawn from [d/2, d].
	for i, want := range []time.Duration{1, 2, 4, 8, 16, 30, 30} {
		want *= time.Second
		if d := b.Next(0); d < want/2 || d > want {
			t.Errorf("dial %d: %s, want from %s to %s", i, d, want/2, want)
		}
	}
	// A tunnel that stayed up a minute starts over; a shorter one does not.
	if d := b.Next(time.Minute); d > time.Second {
		t.Errorf("after a stable minute: %s", d)
	}
	if d := b.Next(59 * time.Second); d < time.Second {
		t.Errorf("after 59 s up: %s, want the doubled delay", d)
	}
}
