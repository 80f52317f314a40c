package cluster

import (
	"strings"
	"testing"

	"github.com/etcdaas/etcdaas/test/cluster/node"
)

// TestCluster brings the node up once and installs etcdaas on it. The scenarios then run side
// by side, each with its own namespace and instance: they mostly wait (for pods, the repair
// grace period, the roll's step timeout, the backup schedule), so the tier takes about as long
// as its longest scenario. Killing the leading controller touches every instance, so that
// scenario runs alone afterwards, on the lifecycle scenario's instance, which is then deleted.
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
	var lifecycle *lifecycleInstance
	t.Run("scenarios", func(t *testing.T) {
		t.Run("instance lifecycle", func(t *testing.T) { t.Parallel(); lifecycle = testInstanceLifecycle(t, e, figs) })
		t.Run("maintenance", func(t *testing.T) { t.Parallel(); testMaintenance(t, e, figs) })
		t.Run("rolling upgrade", func(t *testing.T) { t.Parallel(); testRollingUpgrade(t, e, figs) })
		t.Run("TLS instance", func(t *testing.T) { t.Parallel(); testTLS(t, e, figs) })
		t.Run("storage etcd mutual TLS", func(t *testing.T) { t.Parallel(); testStorageEtcdTLS(t, e) })
		t.Run("unbound claim in the status", func(t *testing.T) { t.Parallel(); testUnboundClaim(t, e) })
		t.Run("restore", func(t *testing.T) { t.Parallel(); testRestore(t, e, figs) })
	})
	if lifecycle != nil {
		t.Run("controller killed mid-scale", func(t *testing.T) { testControllerKilled(t, e, lifecycle.ns, lifecycle.name, figs) })
		t.Run("delete", func(t *testing.T) { testDelete(t, e, lifecycle.ns, lifecycle.name) })
	}
	t.Logf("figures:\n%s", strings.Join(figs.lines(), "\n"))
}
