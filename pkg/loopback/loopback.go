// Package loopback finds free TCP ports on 127.0.0.1, the only address etcdaas binds to when
// it runs etcd members, the standalone server and test control planes on one machine.
package loopback

import (
	"fmt"
	"net"
	"strconv"
)

// Host is the loopback address everything local listens on.
const Host = "127.0.0.1"

// FreePorts returns n distinct TCP ports on 127.0.0.1 that were free a moment ago. All n are
// held open until every one is found, so the same port is never returned twice.
func FreePorts(n int) ([]int, error) {
	listeners := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", net.JoinHostPort(Host, "0"))
		if err != nil {
			return nil, fmt.Errorf("finding a free port on %s: %w", Host, err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// FreePort returns one TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	ports, err := FreePorts(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// HostPort joins 127.0.0.1 and port.
func HostPort(port int) string {
	return net.JoinHostPort(Host, strconv.Itoa(port))
}

// PortFree reports whether port can be bound on 127.0.0.1 right now.
func PortFree(port int) bool {
	l, err := net.Listen("tcp", HostPort(port))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}
