package turn

import (
	"bytes"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// logBuffer collects log lines; tests read it while servers write.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) count(substr string) int { return strings.Count(b.String(), substr) }

func newBufferLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

func TestRateLog(t *testing.T) {
	var out logBuffer
	clock := &fakeClock{time.Unix(1_700_000_000, 0)}
	r := newRateLog(newBufferLogger(&out, slog.LevelInfo), clock.now)

	for i := range 100 {
		r.Log(slog.LevelWarn, "turn: authentication failed", "n", i)
		r.Log(slog.LevelWarn, "turn: other line")
		r.Log(slog.LevelDebug, "turn: below the level")
	}
	if got := out.count("authentication failed"); got != logBurst {
		t.Errorf("%d lines of a repeated message, want %d", got, logBurst)
	}
	if got := out.count("other line"); got != logBurst {
		t.Errorf("one message's rate limits another: %d lines, want %d", got, logBurst)
	}
	if out.count("below the level") != 0 || len(r.lines) != 2 {
		t.Error("a disabled level is written or tracked")
	}

	clock.advance(logWindow)
	r.Log(slog.LevelWarn, "turn: authentication failed", "n", 100)
	if !strings.Contains(out.String(), "n=100 suppressed=90") {
		t.Errorf("the next window's first line does not report the suppressed ones:\n%s", out.String())
	}
}

func TestPionLogger(t *testing.T) {
	var out logBuffer
	r := newRateLog(newBufferLogger(&out, slog.LevelInfo), time.Now)
	l := pionLogs{r}.NewLogger("turn")
	l.Infof("permission denied for client %s", "192.0.2.1:5000") // pion's per-request detail: debug
	l.Debugf("Received %d bytes", 10)
	l.Tracef("trace %d", 1)
	for range 3 * logBurst {
		l.Errorf("Failed to send ChannelData from allocation %v", "192.0.2.1:5000")
	}
	if out.count("permission denied") != 0 || out.count("Received") != 0 || out.count("trace") != 0 {
		t.Errorf("pion detail written at info:\n%s", out.String())
	}
	if got := out.count("Failed to send ChannelData from allocation 192.0.2.1:5000"); got != logBurst {
		t.Errorf("%d pion error lines, want %d (rate-limited by format)", got, logBurst)
	}
}
