package main

import (
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
)

// startKamailio runs Kamailio on cfg listening on tcp:listen, through wrap
// when set (ip netns exec), and returns its log. Its process group is
// stopped at cleanup (SIGTERM, SIGKILL after 5 s) and the log shown when
// the test failed. The caller waits for the port (WaitListening, waitIn).
func startKamailio(t *testing.T, wrap []string, cfg, listen string) *testpeer.Log {
	t.Helper()
	kamailio := testpeer.Program(t, "kamailio", "kamailio")
	kam := command(wrap, kamailio, "-f", cfg, "-DD", "-E", "-Y", t.TempDir(), "-l", "tcp:"+listen, "-m", "32", "-M", "4")
	log := &testpeer.Log{}
	kam.Stdout, kam.Stderr = log, log
	kam.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL} // its children go with it
	if err := kam.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { kam.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-kam.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			syscall.Kill(-kam.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("kamailio:\n%s", log)
		}
	})
	return log
}
