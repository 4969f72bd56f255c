package main

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestTargetDownWithCurl stops the PBX's web server under a running
// gatehouse: once the health check sees it down, every request is answered
// 503 at once and none counts against the client (blacklist.threshold is
// 3, the client sends ten); when the server is back, the same client is
// served again.
func TestTargetDownWithCurl(t *testing.T) {
	need(t, "curl")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	taddr := ln.Addr().String()
	serve := func(ln net.Listener) (stop func()) {
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "pbx") })}
		done := make(chan struct{})
		go func() { defer close(done); srv.Serve(ln) }()
		return func() { srv.Close(); <-done }
	}
	stop := serve(ln)
	_, tport, _ := net.SplitHostPort(taddr)
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	in := start(t, fmt.Sprintf(`listen:
  http: %q
services:
  - {name: hq.example.com, target: 127.0.0.1, ports: {http: %s}}
blacklist:
  threshold: 3
health: {interval: 100ms, timeout: 100ms, fall: 2, rise: 2, http_path: /PBX0/MY}
`, addr, tport), addr)
	url := "http://hq.example.com:" + port + "/PBX0/MY"
	resolve := "hq.example.com:" + port + ":127.0.0.1"
	get := func() string {
		code, _ := curl(t, "127.0.0.2", "--resolve", resolve, url)
		return code
	}
	in.waitLog(t, `msg="target up" target=`+taddr)
	if code := get(); code != "200" {
		t.Fatalf("target up: %s", code)
	}

	stop()
	in.waitLog(t, `msg="target down" target=`+taddr)
	for i := range 10 {
		if code := get(); code != "503" {
			t.Fatalf("request %d while the target is down: %s, want 503", i, code)
		}
	}
	if strings.Contains(in.log.String(), "client blocked") {
		t.Fatalf("a client was blocked for a target that is down:\n%s", in.log)
	}
	if !strings.Contains(in.log.String(), `reason="target down"`) {
		t.Errorf("the refusals do not say the target is down:\n%s", in.log)
	}

	ln, err = net.Listen("tcp", taddr)
	if err != nil {
		t.Fatal(err)
	}
	defer serve(ln)()
	for deadline := time.Now().Add(10 * time.Second); strings.Count(in.log.String(), `msg="target up"`) < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the target never came up again:\n%s", in.log)
		}
	}
	if code := get(); code != "200" {
		t.Fatalf("target back: %s, want 200 (the client must not be blocked)", code)
	}
}
