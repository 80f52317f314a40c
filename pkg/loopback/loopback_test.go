package loopback

import (
	"net"
	"testing"
)

func TestFreePortsAreDistinctAndBindable(t *testing.T) {
	ports, err := FreePorts(16)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Fatalf("port %d returned twice in %v", p, ports)
		}
		seen[p] = true
		if !PortFree(p) {
			t.Fatalf("port %d is not free", p)
		}
	}
	l, err := net.Listen("tcp", HostPort(ports[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	if PortFree(ports[0]) {
		t.Fatalf("PortFree(%d) is true while it is bound", ports[0])
	}
}
