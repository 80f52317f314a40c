package cluster

import (
	"strings"
	"testing"

	"github.com/etcdaas/etcdaas/test/cluster/node"
)

// TestCluster brings the node up once and runs the tier's scenarios on it in order.
func TestCluster(t *testing.T) {
	c := node.Start(t)
	if !t.Run("node", func(t *testing.T) { testNode(t, c) }) {
		return
	}
	var e *etcdaasInstall
	if !t.Run("install deploy/aggregated", func(t *testing.T) { e = installEtcdaas(t, c) }) {
		return
	}
	figs := &figures{}
	t.Run("instance lifecycle", func(t *testing.T) { testInstanceLifecycle(t, e, figs) })
	t.Run("rolling upgrade", func(t *testing.T) { testRollingUpgrade(t, e, figs) })
	t.Run("TLS instance", func(t *testing.T) { testTLS(t, e) })
	t.Run("unbound claim in the status", func(t *testing.T) { testUnboundClaim(t, e) })
	t.Run("restore", func(t *testing.T) { testRestore(t, e, figs) })
	t.Logf("figures:\n%s", strings.Join(figs.lines, "\n"))
}
