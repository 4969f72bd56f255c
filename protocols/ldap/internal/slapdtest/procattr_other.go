//go:build !linux

package slapdtest

import "syscall"

func procAttr() *syscall.SysProcAttr { return nil }
