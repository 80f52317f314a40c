package local

import (
	"fmt"

	"github.com/etcdaas/etcdaas/pkg/loopback"
)

// portSet is a set of TCP ports on 127.0.0.1.
type portSet map[int]bool

// recordedPorts returns the peer and client ports recorded for members.
func recordedPorts(members []memberState) portSet {
	ports := portSet{}
	for _, m := range members {
		ports[m.PeerPort], ports[m.ClientPort] = true, true
	}
	return ports
}

// freePorts returns a free peer port and a free client port on 127.0.0.1, neither in avoid,
// and adds both to avoid. The system may hand out any port no process has bound, such as
// one recorded for a member that is stopped: avoid holds the ports recorded for the
// instance's members (recordedPorts), so that no two members ever share a URL.
func (b *Backend) freePorts(avoid portSet) (peer, client int, err error) {
	// Of len(avoid)+2 distinct ports, two at least are not in avoid.
	ports, err := b.ports(len(avoid) + 2)
	if err != nil {
		return 0, 0, err
	}
	var picked []int
	for _, p := range ports {
		if len(picked) < 2 && !avoid[p] {
			avoid[p] = true
			picked = append(picked, p)
		}
	}
	if len(picked) < 2 {
		return 0, 0, fmt.Errorf("finding two free ports on %s: every port found is recorded for a member", loopback.Host)
	}
	return picked[0], picked[1], nil
}

// replaceTakenPorts returns the ports m, a member of st, is to start on: its recorded ones,
// but for a port taken meanwhile, replaced by a free one that no member of st has recorded.
// Only a taken port moves: members restarting from their data reach each other at the peer
// URLs their data records until readvertise, which needs a quorum, so a peer port that moves
// without need may leave too few members able to reach each other.
func (b *Backend) replaceTakenPorts(st *instanceState, m *memberState) (peer, client int, moved bool, err error) {
	peer, client = m.PeerPort, m.ClientPort
	peerTaken, clientTaken := !loopback.PortFree(peer), !loopback.PortFree(client)
	if !peerTaken && !clientTaken {
		return peer, client, false, nil
	}
	p, c, err := b.freePorts(recordedPorts(st.Members))
	if err != nil {
		return 0, 0, false, err
	}
	if peerTaken {
		peer = p
	}
	if clientTaken {
		client = c
	}
	return peer, client, true, nil
}
