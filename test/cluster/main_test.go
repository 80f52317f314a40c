package cluster

import (
	"testing"

	"github.com/etcdaas/etcdaas/test/cluster/node"
	"github.com/etcdaas/etcdaas/test/e2e/framework"
)

func TestMain(m *testing.M) { node.Main(m, framework.CleanupBuild) }
