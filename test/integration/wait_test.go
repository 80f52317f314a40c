package integration

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcdaas/etcdaas/pkg/controller/backend/local"
	"github.com/etcdaas/etcdaas/test/integration/framework"
	"github.com/etcdaas/etcdaas/test/testenv"
)

// waitManifest is the file README.md's "Waiting for an instance" applies: my-etcd, 3 members.
const waitManifest = "deploy/examples/etcdinstance-v1beta1.yaml"

// waitState has kubectl wait print, of the object that met the condition: generation,
// observed generation, members, ready members, phase, Progressing's reason and Available.
const waitState = `-o=jsonpath={.metadata.generation} {.status.observedGeneration} {.status.replicas} {.status.readyReplicas} ` +
	`{.status.phase} {.status.conditions[?(@.type=="Progressing")].reason} {.status.conditions[?(@.type=="Available")].status}`

// TestKubectlWait runs the kubectl wait commands README.md gives, with every kubectl tested,
// against an instance the in-process controller deploys and scales. Each must return only
// once the size asked for serves: what kubectl printed of the object that met the condition
// shows it.
func TestKubectlWait(t *testing.T) {
	t.Parallel()
	e := ctlStart(t, local.Options{})
	for label, bin := range framework.KubectlBinaries(t) {
		t.Run(label, func(t *testing.T) {
			k := newKubectl(t, bin)
			k.env = append(k.env, "KUBECONFIG="+e.srv.KubeconfigPath)
			k.timeout = 6 * time.Minute
			root, err := testenv.RepoRoot()
			if err != nil {
				t.Fatal(err)
			}
			manifest := filepath.Join(root, waitManifest)
			wait := func(condition string) string {
				t.Helper()
				return strings.TrimSpace(k.mustStdout("wait", "etcd/my-etcd", condition, "--timeout=5m", waitState))
			}

			// Create, then wait until it serves: every member it was created with, not the
			// first alone.
			k.must("apply", "-f", manifest)
			if got := wait("--for=condition=Available"); got != "1 1 3 3 Running Converged True" {
				t.Errorf("after create, wait --for=condition=Available returned with %q, want 1 1 3 3 Running Converged True", got)
			}

			// Scale, then wait until the new size serves: Progressing=False at the new
			// generation, up and down.
			for _, step := range []struct{ replicas, want string }{
				{"5", "2 2 5 5 Running Converged True"},
				{"3", "3 3 3 3 Running Converged True"},
				{"1", "4 4 1 1 Running Converged True"},
			} {
				k.must("scale", "etcd/my-etcd", "--replicas="+step.replicas)
				if got := wait("--for=condition=Progressing=False"); got != step.want {
					t.Errorf("after scale to %s, wait --for=condition=Progressing=False returned with %q, want %s", step.replicas, got, step.want)
				}
			}

			// Scale up, then wait for the ready count: it cannot be reached before the new
			// members serve.
			k.must("scale", "etcd/my-etcd", "--replicas=3")
			if got := strings.Fields(wait("--for=jsonpath={.status.readyReplicas}=3")); len(got) < 4 || strings.Join(got[:4], " ") != "5 5 3 3" {
				t.Errorf("after scale from 1 to 3, wait --for=jsonpath={.status.readyReplicas}=3 returned with %q, want 5 5 3 3 ...", got)
			}
			if got := wait("--for=condition=Progressing=False"); got != "5 5 3 3 Running Converged True" {
				t.Errorf("after scale from 1 to 3, wait --for=condition=Progressing=False returned with %q, want 5 5 3 3 Running Converged True", got)
			}

			k.must("delete", "etcd/my-etcd", "--wait")
		})
	}
}
