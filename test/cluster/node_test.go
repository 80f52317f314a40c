package cluster

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/etcdaas/etcdaas/test/cluster/node"
)

// testNode checks the node itself: the cluster's DNS answers through its ClusterIP, and it
// is the only resolver this run can reach (the tier's private /etc/resolv.conf).
func testNode(t *testing.T, c *node.Cluster) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupHost(ctx, "kubernetes.default.svc."+node.ClusterDomain)
	if err != nil {
		t.Fatalf("resolving the kubernetes Service through CoreDNS: %v", err)
	}
	if !slices.Equal(addrs, []string{node.KubernetesServiceIP}) {
		t.Errorf("kubernetes.default.svc resolves to %v, want [%s]", addrs, node.KubernetesServiceIP)
	}
	// CoreDNS has no upstream: a name outside the cluster is never forwarded.
	if addrs, err := net.DefaultResolver.LookupHost(ctx, "example.com"); err == nil {
		t.Errorf("example.com resolved to %v: a query left the cluster's DNS", addrs)
	}
}
