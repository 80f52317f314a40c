package cluster

import (
	"flag"
	"fmt"
	"os"
	"testing"

	"github.com/etcdaas/etcdaas/test/cluster/node"
	"github.com/etcdaas/etcdaas/test/e2e/framework"
	"github.com/etcdaas/etcdaas/test/testenv"
)

// parallelScenarios is how many of the tier's scenarios run side by side unless
// -test.parallel is given: all of them (see TestCluster).
const parallelScenarios = 6

func TestMain(m *testing.M) {
	flag.Parse()
	if err := testenv.DefaultParallel(parallelScenarios); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	node.Main(m, framework.CleanupBuild)
}
