package main

import (
	"context"
	"net"
	"os"
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
	// A demo someone left running holds the fixed ports: that is no fault
	// of the demo, so the test steps aside (in CI nothing else runs).
	for _, port := range []string{"8080", "8443", "8081", "9443"} {
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second); err == nil {
			c.Close()
			msg := "port " + port + " is in use (a `make demo` running?): the demo needs it"
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
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

// TestDemoPortTaken: with one of the demo's ports held by something else,
// `make demo` says which port and what to do, and stops before starting
// anything.
func TestDemoPortTaken(t *testing.T) {
	need(t, "make", "bash")
	ln, err := net.Listen("tcp", "127.0.0.1:8081")
	if err != nil {
		t.Skipf("port 8081 is in use already: %v", err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "demo/run.sh")
	cmd.Dir = "../.."
	cmd.Env = append(cmd.Environ(), "DEMO_ONESHOT=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the demo ran with its port taken:\n%s", out)
	}
	for _, want := range []string{"demo: port 8081 on 127.0.0.1 is already in use", "then run `make demo` again"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the demo's output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "gatehouse.yaml: OK") {
		t.Errorf("the demo went on:\n%s", out)
	}
}
