package main

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// dialControl sets IP_BIND_ADDRESS_NO_PORT, so that dialing from a chosen
// source address (-source-ips) lets the kernel pick the port at connect
// time, per destination, instead of reserving it at bind time: each source
// address then has its own whole ephemeral range towards the gateway.
func dialControl(network, address string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		if network == "tcp4" || network == "tcp" {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
		}
	})
	if err != nil {
		return err
	}
	_ = serr // an old kernel without the option still works, with fewer ports
	return nil
}
