package main

import (
	"syscall"
	"testing"

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
	kam.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return testpeer.StartGroup(t, "kamailio", kam)
}
