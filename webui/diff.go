package webui

import "strings"

// DiffLine is one line of a diff between the running configuration file
// and a submitted one: Op is ' ' (unchanged), '-' (only in the running
// file) or '+' (only in the submitted one); Old and New are its line
// numbers (0 where it has none). A run of unchanged lines far from any
// change is folded into one line with Op '~' and Text saying how many.
type DiffLine struct {
	Op       byte
	Old, New int
	Text     string
}

// OpName is Op as a word, for the page's CSS classes.
func (d DiffLine) OpName() string {
	switch d.Op {
	case '+':
		return "added"
	case '-':
		return "removed"
	case '~':
		return "folded"
	}
	return "same"
}

// diffContext is how many unchanged lines are shown around a change.
const diffContext = 3

// maxDiffCells bounds the LCS table (lines of one file times lines of the
// other): beyond it the diff is every old line removed and every new line
// added, which is still correct, only longer.
const maxDiffCells = 16 << 20

// diffLines compares old and new line by line (a longest common
// subsequence) and returns the changes with their context; nil when the
// texts are equal.
func diffLines(old, new string) []DiffLine {
	if old == new {
		return nil
	}
	a, b := splitLines(old), splitLines(new)
	// Common head and tail cost nothing in the table.
	pre := 0
	for pre < len(a) && pre < len(b) && a[pre] == b[pre] {
		pre++
	}
	suf := 0
	for suf < len(a)-pre && suf < len(b)-pre && a[len(a)-1-suf] == b[len(b)-1-suf] {
		suf++
	}
	if pre == len(a) && pre == len(b) {
		return nil // the same lines (a final newline apart)
	}
	ma, mb := a[pre:len(a)-suf], b[pre:len(b)-suf]
	var all []DiffLine
	for i := 0; i < pre; i++ {
		all = append(all, DiffLine{Op: ' ', Old: i + 1, New: i + 1, Text: a[i]})
	}
	all = append(all, middle(ma, mb, pre)...)
	for i := 0; i < suf; i++ {
		oi, ni := len(a)-suf+i, len(b)-suf+i
		all = append(all, DiffLine{Op: ' ', Old: oi + 1, New: ni + 1, Text: a[oi]})
	}
	return fold(all)
}

// middle diffs the changed middle part; offset is the lines before it.
func middle(a, b []string, offset int) []DiffLine {
	var out []DiffLine
	if len(a)*len(b) > maxDiffCells {
		for i, l := range a {
			out = append(out, DiffLine{Op: '-', Old: offset + i + 1, Text: l})
		}
		for j, l := range b {
			out = append(out, DiffLine{Op: '+', New: offset + j + 1, Text: l})
		}
		return out
	}
	// lcs[i][j] is the length of the longest common subsequence of a[i:] and b[j:].
	w := len(b) + 1
	lcs := make([]int32, (len(a)+1)*w)
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i*w+j] = lcs[(i+1)*w+j+1] + 1
			} else {
				lcs[i*w+j] = max(lcs[(i+1)*w+j], lcs[i*w+j+1])
			}
		}
	}
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			out = append(out, DiffLine{Op: ' ', Old: offset + i + 1, New: offset + j + 1, Text: a[i]})
			i, j = i+1, j+1
		case j < len(b) && (i == len(a) || lcs[i*w+j+1] > lcs[(i+1)*w+j]): // removals first on a tie
			out = append(out, DiffLine{Op: '+', New: offset + j + 1, Text: b[j]})
			j++
		default:
			out = append(out, DiffLine{Op: '-', Old: offset + i + 1, Text: a[i]})
			i++
		}
	}
	return out
}

// fold keeps diffContext unchanged lines around each change and folds
// the rest.
func fold(all []DiffLine) []DiffLine {
	keep := make([]bool, len(all))
	for i, d := range all {
		if d.Op != ' ' {
			for k := max(0, i-diffContext); k <= min(len(all)-1, i+diffContext); k++ {
				keep[k] = true
			}
		}
	}
	var out []DiffLine
	for i := 0; i < len(all); {
		if keep[i] {
			out = append(out, all[i])
			i++
			continue
		}
		j := i
		for j < len(all) && !keep[j] {
			j++
		}
		n := j - i
		text := "1 unchanged line"
		if n > 1 {
			text = itoa(n) + " unchanged lines"
		}
		out = append(out, DiffLine{Op: '~', Old: all[i].Old, New: all[i].New, Text: text})
		i = j
	}
	return out
}

func splitLines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}
