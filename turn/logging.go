package turn

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pion/logging"
)

// Repetitive lines: at most logBurst per message and logWindow.
const (
	logBurst  = 10
	logWindow = time.Minute
	// logKeys bounds the number of distinct messages tracked; messages are
	// format strings, so the set is small unless something is wrong.
	logKeys = 1024
)

// rateLog writes at most logBurst lines per message per window; the rest are
// counted and the count is attached to the first line of the next window.
// A flood then costs counters in Stats, not a flooded log.
type rateLog struct {
	log *slog.Logger
	now func() time.Time

	mu    sync.Mutex // guards lines
	lines map[string]*lineCount
}

type lineCount struct {
	start      time.Time
	n          int
	suppressed int
}

func newRateLog(log *slog.Logger, now func() time.Time) *rateLog {
	return &rateLog{log: log, now: now, lines: make(map[string]*lineCount)}
}

// Log writes msg unless it has been written too often lately.
func (r *rateLog) Log(level slog.Level, msg string, args ...any) {
	if !r.log.Enabled(context.Background(), level) {
		return
	}
	r.logKey(level, msg, msg, args...)
}

// logKey is Log with the rate counted under key rather than msg.
func (r *rateLog) logKey(level slog.Level, key, msg string, args ...any) {
	now := r.now()
	r.mu.Lock()
	lc := r.lines[key]
	if lc == nil && len(r.lines) >= logKeys {
		key = "(other)"
		lc = r.lines[key]
	}
	if lc == nil || now.Sub(lc.start) >= logWindow {
		if lc != nil && lc.suppressed > 0 {
			args = append(args, "suppressed", lc.suppressed)
		}
		lc = &lineCount{start: now}
		r.lines[key] = lc
	}
	lc.n++
	if lc.n > logBurst {
		lc.suppressed++
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	r.log.Log(context.Background(), level, msg, args...)
}

// pionLogs hands pion loggers that write through the rate limiter. pion's
// Info lines are per-request detail, so they go out at Debug; our own lines
// say what matters at Info and above.
type pionLogs struct{ r *rateLog }

func (f pionLogs) NewLogger(scope string) logging.LeveledLogger { return pionLogger{f.r, scope} }

type pionLogger struct {
	r     *rateLog
	scope string
}

// logf formats and writes one pion line; the format string is the key its
// rate is counted under, since the arguments (addresses) vary.
func (l pionLogger) logf(level slog.Level, format string, args ...any) {
	if !l.r.log.Enabled(context.Background(), level) {
		return // skip formatting: pion logs every datagram at Debug
	}
	l.r.logKey(level, format, "pion: "+fmt.Sprintf(format, args...), "scope", l.scope)
}

func (l pionLogger) log(level slog.Level, msg string) {
	if l.r.log.Enabled(context.Background(), level) {
		l.r.logKey(level, msg, "pion: "+msg, "scope", l.scope)
	}
}

func (pionLogger) Trace(string)          {}
func (pionLogger) Tracef(string, ...any) {}

func (l pionLogger) Debug(msg string)               { l.log(slog.LevelDebug, msg) }
func (l pionLogger) Debugf(format string, a ...any) { l.logf(slog.LevelDebug, format, a...) }
func (l pionLogger) Info(msg string)                { l.log(slog.LevelDebug, msg) }
func (l pionLogger) Infof(format string, a ...any)  { l.logf(slog.LevelDebug, format, a...) }
func (l pionLogger) Warn(msg string)                { l.log(slog.LevelWarn, msg) }
func (l pionLogger) Warnf(format string, a ...any)  { l.logf(slog.LevelWarn, format, a...) }
func (l pionLogger) Error(msg string)               { l.log(slog.LevelError, msg) }
func (l pionLogger) Errorf(format string, a ...any) { l.logf(slog.LevelError, format, a...) }
