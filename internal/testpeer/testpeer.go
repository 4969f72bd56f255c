// Package testpeer holds what the tests that drive real third-party
// programs (curl, slapd, kamailio, sipp, coturn's clients, tshark, chromium)
// share: finding the program, a log buffer that exec's copying goroutine and
// the test may use at once, free loopback ports, and waiting for a listener.
//
// A missing program skips the test on a developer's machine but fails it
// under CI=true, where .ci/run has installed every one of them: a broken
// setup must never pass as a skipped test.
package testpeer

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Program returns the path of the program name from the Debian package
// pkg, looking in PATH and then in the sbin directories a non-root PATH
// lacks. Missing, it skips t, or fails it when CI=true.
func Program(t testing.TB, name, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	msg := fmt.Sprintf("%s is not installed (Debian package %s; .ci/run installs it)", name, pkg)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// Log collects a process's output. exec's copying goroutine writes while
// the test reads, so every method locks.
type Log struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Bytes returns a copy of everything written so far.
func (l *Log) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

// FreePort returns a TCP port free on 127.0.0.1 a moment ago (FreeAddrOn).
func FreePort(t testing.TB) int {
	t.Helper()
	_, port, _ := net.SplitHostPort(FreeAddrOn(t, "127.0.0.1"))
	n, _ := strconv.Atoi(port)
	return n
}

// handedOut holds every port FreeAddrOn has returned in this process: the
// kernel may give a port closed a moment ago to the next caller, and a
// test that picks several ports before starting anything (a listener and
// the cluster's forward_listen of one node) would then get one twice.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// FreeAddrOn returns ip:port with a TCP port free on ip now (a port free
// on 127.0.0.1 may be taken on 127.0.0.2) and not handed out before in
// this test process.
func FreeAddrOn(t testing.TB, ip string) string {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().(*net.TCPAddr)
		l.Close()
		handedOut.Lock()
		taken := handedOut.ports[addr.Port]
		handedOut.ports[addr.Port] = true
		handedOut.Unlock()
		if !taken {
			return addr.String()
		}
	}
	t.Fatal("no TCP port free that was not handed out before")
	return ""
}

// WaitListening waits up to ten seconds until something accepts TCP
// connections on addr.
func WaitListening(t testing.TB, addr string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
	}
	t.Fatalf("nothing listens on %s", addr)
}

// Serve listens on addr ("127.0.0.5:0") and runs handle for every
// connection on a goroutine of its own, closing the connection after;
// the listener closes and every handle is waited for when the test ends.
// It returns the address listened on.
func Serve(t testing.TB, addr string, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ServeOn(t, ln, handle)
	return ln.Addr().String()
}

// ServeOn is Serve on a listener of the caller's (a TLS listener).
func ServeOn(t testing.TB, ln net.Listener, handle func(net.Conn)) {
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
}

// StartGroup starts cmd in a process group of its own (a peer that forks:
// Kamailio, socat) until the test ends: then the group gets SIGTERM, and
// SIGKILL after 5 s. Its output goes to cmd's Stdout and Stderr when the
// caller set them, else to the returned Log, shown under name when the
// test failed. A SysProcAttr the caller set (Pdeathsig) is kept.
func StartGroup(t testing.TB, name string, cmd *exec.Cmd) *Log {
	t.Helper()
	log := &Log{}
	own := cmd.Stdout == nil && cmd.Stderr == nil
	if own {
		cmd.Stdout, cmd.Stderr = log, log
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true // its children go with it
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		cmd.Wait()
	}()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if own && t.Failed() {
			t.Logf("%s:\n%s", name, log)
		}
	})
	return log
}

// TCPPair returns both ends of a loopback TCP connection accepted on ln
// (nil: a fresh listener on 127.0.0.1, closed once the pair is made); both
// are closed at the test's end.
func TCPPair(t testing.TB, ln net.Listener) (client, server *net.TCPConn) {
	t.Helper()
	if ln == nil {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ln = l
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}
