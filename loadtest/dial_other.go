//go:build !linux

package main

import "syscall"

// dialControl does nothing outside Linux (see dial_linux.go).
func dialControl(network, address string, rc syscall.RawConn) error { return nil }
