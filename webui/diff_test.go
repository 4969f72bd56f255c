package webui

import (
	"fmt"
	"strings"
	"testing"
)

func render(ds []DiffLine) string {
	var b strings.Builder
	for _, d := range ds {
		fmt.Fprintf(&b, "%c%d,%d %s\n", d.Op, d.Old, d.New, d.Text)
	}
	return b.String()
}

func TestDiffLines(t *testing.T) {
	long := func(n int, change map[int]string) string {
		var lines []string
		for i := 1; i <= n; i++ {
			l := fmt.Sprintf("line %d", i)
			if c, ok := change[i]; ok {
				l = c
			}
			lines = append(lines, l)
		}
		return strings.Join(lines, "\n") + "\n"
	}
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"equal", "a\nb\n", "a\nb\n", ""},
		{"a key changed", "log:\n  level: info\n", "log:\n  level: debug\n", " 1,1 log:\n-2,0   level: info\n+0,2   level: debug\n"},
		{"a line added at the end", "a\n", "a\nb\n", " 1,1 a\n+0,2 b\n"},
		{"a line removed at the start", "a\nb\n", "b\n", "-1,0 a\n 2,1 b\n"},
		{"no final newline is no change", "a\nb", "a\nb\n", ""},
		{"from empty", "", "a\n", "+0,1 a\n"},
		{"one change in a long file: context and folds", long(20, nil), long(20, map[int]string{10: "ten"}),
			"~1,1 6 unchanged lines\n 7,7 line 7\n 8,8 line 8\n 9,9 line 9\n-10,0 line 10\n+0,10 ten\n 11,11 line 11\n 12,12 line 12\n 13,13 line 13\n~14,14 7 unchanged lines\n"},
		{"moved block", "a\nb\nc\nd\n", "c\nd\na\nb\n", "-1,0 a\n-2,0 b\n 3,1 c\n 4,2 d\n+0,3 a\n+0,4 b\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := render(diffLines(tc.old, tc.new)); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}
