//go:build !linux

package main

import "net"

// arrivalReader is Linux only (arrival_linux.go); elsewhere connections
// are read without receive timestamps and no arrival latency is reported.
type arrivalReader struct{ ts int64 }

func newArrivalReader(*net.TCPConn) *arrivalReader { return nil }

func (a *arrivalReader) Read([]byte) (int, error) { panic("unreachable") }
