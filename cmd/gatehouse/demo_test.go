package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestDemo runs `make demo`'s script, the first command of the README, as a
// newcomer would, and checks that it shows what it promises: a routed
// request, two refused ones and the admin API. It uses the demo's fixed
// loopback ports (8080, 8443, 8081, 9443).
func TestDemo(t *testing.T) {
	need(t, "curl", "make", "bash")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "demo/run.sh")
	cmd.Dir = "../.."
	cmd.Env = append(cmd.Environ(), "DEMO_ONESHOT=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo/run.sh: %v\n%s", err, out)
	}
	for _, want := range []string{
		"gatehouse.yaml: OK",
		"demo PBX: GET /PBX0/MY/index.htm for Host hq.example.com:8443, X-Forwarded-For 127.0.0.1, X-Forwarded-Proto https\n[HTTP 200]",
		"Forbidden\n[HTTP 403]",
		"Misdirected Request\n[HTTP 421]",
		`"reason": "url not allowed"`,
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the demo's output lacks %q:\n%s", want, out)
		}
	}
}
