package slapdtest

import "syscall"

// procAttr makes the kernel kill slapd when the test binary dies without
// running its cleanups (a test timeout panics), so no slapd outlives it.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
