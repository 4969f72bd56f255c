package configs

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Error is one problem in a configuration file, located by line and key.
type Error struct {
	File string
	Line int    // 1-based; 0 when the problem has no line (the file could not be read)
	Key  string // path of the key, e.g. services[1].allow.networks.ldaps[0]; "" for the whole file
	Msg  string

	col int // orders problems within a line, for flow mappings like {a: 1, b: 2}
}

// Error formats the problem as FILE:LINE: KEY: MSG, leaving out what is unknown.
func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a configuration, sorted by line, so that
// one run of `gatehouse check` shows all of them.
type Errors []*Error

// Error prints one problem per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// sorted orders the problems as the file does and drops repeats (a value
// merged into several mappings with "<<" is reported once).
func (es Errors) sorted() Errors {
	slices.SortStableFunc(es, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.col, b.col))
	})
	return slices.CompactFunc(es, func(a, b *Error) bool { return *a == *b })
}
