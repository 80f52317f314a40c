// Package framework runs a real Kubernetes control plane on loopback for the etcdaas
// end-to-end tests: etcd, kube-apiserver with aggregation enabled, kube-controller-manager,
// a separate etcd for etcdaas, etcdaas-apiserver in aggregated mode under a least-privilege
// identity, and etcdaas-controller. Every process runs in its own process group, logs to a
// file in the run's work directory and is stopped when the test ends, even on failure.
package framework

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etcdaas/etcdaas/test/testenv"
)

// ToolsBinEnv names the environment variable that points at the directory of the pinned
// control-plane binaries built by `make tools`.
const ToolsBinEnv = "ETCDAAS_TOOLS_BIN"

// Tool names, as hack/tools/build.sh writes them into the tools directory.
const (
	Etcd                  = "etcd"
	Etcdutl               = "etcdutl"
	KubeAPIServer         = "kube-apiserver"
	KubeControllerManager = "kube-controller-manager"
	Kubectl               = "kubectl"
	// Promtool checks and unit-tests Prometheus rules (hack/tools/promtool).
	Promtool = "promtool"
)

// Our commands, built by BuildCommands.
const (
	APIServerCommand  = "etcdaas-apiserver"
	ControllerCommand = "etcdaas-controller"
	PluginCommand     = "kubectl-etcdaas"
)

// ToolsBin returns the directory of the pinned control-plane binaries: $ETCDAAS_TOOLS_BIN,
// else <repo>/_output/bin.
func ToolsBin() (string, error) {
	if dir := os.Getenv(ToolsBinEnv); dir != "" {
		return filepath.Abs(dir)
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "_output", "bin"), nil
}

// RequireTools returns the paths of the named tools. When one is missing the test fails in
// CI and is skipped elsewhere, with the command that builds them.
func RequireTools(t testing.TB, names ...string) map[string]string {
	t.Helper()
	dir, err := ToolsBin()
	if err != nil {
		t.Fatalf("locating the tools directory: %v", err)
	}
	paths := map[string]string{}
	var missing []string
	for _, name := range names {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			missing = append(missing, name)
			continue
		}
		paths[name] = p
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("missing %s in %s (set %s or run `make tools`)", strings.Join(missing, ", "), dir, ToolsBinEnv)
		if testenv.InCI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return paths
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
	buildTime time.Duration
)

// BuildCommands builds etcdaas-apiserver, etcdaas-controller and kubectl-etcdaas once per
// test binary into a temporary directory and returns that directory. The Go build cache
// makes a rebuild of unchanged sources quick.
func BuildCommands(t testing.TB) string {
	t.Helper()
	dir, err := buildCommands()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// buildCommands is BuildCommands without a test, so that it can start in the background;
// concurrent callers wait for the one build.
func buildCommands() (string, error) {
	buildOnce.Do(func() {
		root, err := testenv.RepoRoot()
		if err != nil {
			buildErr = err
			return
		}
		buildDir, err = os.MkdirTemp("", "etcdaas-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		start := time.Now()
		cmd := exec.Command("go", "build", "-o", buildDir+string(filepath.Separator),
			"./cmd/"+APIServerCommand, "./cmd/"+ControllerCommand, "./cmd/"+PluginCommand)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build of our commands: %v\n%s", err, out)
			return
		}
		buildTime = time.Since(start)
	})
	return buildDir, buildErr
}

// BuildTime is how long BuildCommands took (zero before it ran).
func BuildTime() time.Duration { return buildTime }

// CleanupBuild removes the directory BuildCommands built into, after waiting for a build
// under way; call it from TestMain.
func CleanupBuild() {
	buildOnce.Do(func() {})
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
}
