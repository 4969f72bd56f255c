// Command testsummary reads `go test -json` on stdin and prints what `go
// test` prints without -v (each package's result, the output of failed
// tests), then a summary of the tests that skipped themselves and why:
// an end-to-end test whose real peer (kamailio, slapd, chromium, ...) is
// not installed skips outside CI, and `make test` should say so rather
// than look complete. It exits 1 when anything failed.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// event is one line of test2json's output.
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

type key struct{ pkg, test string }

func main() {
	os.Exit(summarize(os.Stdin, os.Stdout))
}

func summarize(in io.Reader, out io.Writer) int {
	output := map[key][]string{} // each test's output, until it ends
	var skipped []string
	failed := false
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ev event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			fmt.Fprintln(out, sc.Text()) // not JSON: a build error printed as text
			continue
		}
		k := key{ev.Package, ev.Test}
		switch ev.Action {
		case "output", "build-output":
			output[k] = append(output[k], ev.Output)
		case "fail", "build-fail":
			failed = true
			if ev.Test != "" || ev.Action == "build-fail" {
				fmt.Fprint(out, strings.Join(output[k], ""))
			} else {
				fmt.Fprintf(out, "FAIL\t%s\t%.3fs\n", ev.Package, ev.Elapsed)
			}
			delete(output, k)
		case "skip":
			if ev.Test != "" {
				skipped = append(skipped, fmt.Sprintf("%s %s: %s", ev.Package, ev.Test, reason(output[k])))
			}
			delete(output, k)
		case "pass":
			if ev.Test == "" {
				fmt.Fprintf(out, "ok  \t%s\t%.3fs\n", ev.Package, ev.Elapsed)
			}
			delete(output, k)
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(out, "testsummary:", err)
		return 1
	}
	if len(skipped) > 0 {
		sort.Strings(skipped)
		fmt.Fprintf(out, "\n%d test(s) skipped (install what they name, or run `sudo bash .ci/run`; under CI=true they fail instead):\n", len(skipped))
		for _, s := range skipped {
			fmt.Fprintln(out, "  "+s)
		}
	}
	if failed {
		return 1
	}
	return 0
}

// reason is the message a skipped test gave: the output line before its
// "--- SKIP" line, trimmed of the file:line prefix.
func reason(lines []string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if l == "" || strings.HasPrefix(l, "--- SKIP") || strings.HasPrefix(l, "=== ") {
			continue
		}
		if _, msg, ok := strings.Cut(l, ".go:"); ok {
			if _, m, ok := strings.Cut(msg, ": "); ok {
				return m
			}
		}
		return l
	}
	return "(no reason given)"
}
