package bench

import (
	"os"
	"testing"

	"github.com/etcdaas/etcdaas/test/e2e/framework"
)

func TestMain(m *testing.M) {
	code := m.Run()
	framework.CleanupBuild()
	os.Exit(code)
}
