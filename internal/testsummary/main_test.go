package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSummarizeRealRun runs `go test -json` on a package of tests made
// here, one passing, one skipping, one failing, and checks the summary.
func TestSummarizeRealRun(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/s\n\ngo 1.26\n")
	write("s_test.go", `package s

import "testing"

func TestPasses(t *testing.T) {}
func TestNeedsPeer(t *testing.T) { t.Skip("kamailio is not installed (Debian package kamailio)") }
func TestBreaks(t *testing.T) { t.Log("it broke"); t.Fail() }
`)
	cmd := exec.Command("go", "test", "-json", "-count=1", ".")
	cmd.Dir = dir
	js, _ := cmd.Output() // fails: one test fails
	var out bytes.Buffer
	if code := summarize(bytes.NewReader(js), &out); code != 1 {
		t.Errorf("exit %d, want 1 for a failed test\n%s", code, out.String())
	}
	s := out.String()
	for _, want := range []string{"--- FAIL: TestBreaks", "it broke", "FAIL\texample.com/s",
		"1 test(s) skipped", "example.com/s TestNeedsPeer: kamailio is not installed (Debian package kamailio)"} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "TestPasses") {
		t.Errorf("a passing test is listed:\n%s", s)
	}
}
