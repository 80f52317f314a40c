package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/test/e2e/framework"
)

// skewKubectl is the distribution's kubectl, an older client than the pinned one.
const skewKubectl = "/usr/bin/kubectl"

const instanceManifest = `apiVersion: etcdaas.dev/v1beta1
kind: ETCDInstance
metadata:
  name: %s
  namespace: %s
spec:
  replicas: %d
  version: "3.7"
  tls:
    enabled: %t
`

// figures are the timings the tier reports, added by scenarios running side by side.
type figures struct {
	mu    sync.Mutex
	added []string
}

func (f *figures) add(t *testing.T, what string, d time.Duration) {
	line := fmt.Sprintf("%-40s %s", what, d.Round(100*time.Millisecond))
	f.mu.Lock()
	f.added = append(f.added, line)
	f.mu.Unlock()
	t.Logf("figure: %s", line)
}

func (f *figures) lines() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.added)
}

// lifecycleInstance is the instance the lifecycle scenario leaves running for the scenarios
// that run after the others.
type lifecycleInstance struct{ ns, name string }

// testInstanceLifecycle drives one plain instance through creation, a client reaching it
// by its Service's DNS name, scaling out and in with both kubectls, a member pod deleted,
// a member's volume lost with its pod, a backup through the aggregator, and two of three
// members lost and the cluster recovered from the survivor. It returns the instance when all
// of that passed, for the controller failover and the deletion that follow; nil otherwise.
func testInstanceLifecycle(t *testing.T, e *etcdaasInstall, figs *figures) *lifecycleInstance {
	const ns, name = "lifecycle", "k1"
	e.createNamespace(t, ns)
	pinned := e.kubectl(e.c.Tools[framework.Kubectl])
	ctx := t.Context()

	start := time.Now()
	mustRun(t, pinned, fmt.Sprintf(instanceManifest, name, ns, 3, false), "apply", "-f", "-")
	inst, err := e.waitSettled(ctx, ns, name, 3, 4*time.Minute, nil)
	if err != nil {
		dumpNamespace(t, e.c, ns)
		t.Fatal(err)
	}
	figs.add(t, "create -> Running (3 members)", time.Since(start))
	for i, m := range inst.Status.Members {
		want := fmt.Sprintf("http://%s-%d.%s-peers.%s.svc.cluster.local:2380", name, i, name, ns)
		if m.Name != fmt.Sprintf("%s-%d", name, i) || m.PeerURL != want {
			t.Errorf("member %d: %s %s, want %s-%d with peer URL %s", i, m.Name, m.PeerURL, name, i, want)
		}
	}
	e.checkPodsReady(t, ns, name, 3)

	clientURL := fmt.Sprintf("--endpoints=http://%s.%s.svc.cluster.local:2379", name, ns)
	e.mustClient(t, ns, "put-before-scale", "", clientURL, "put", "/greeting", "written-at-3")

	t.Run("scale", func(t *testing.T) { testScale(t, e, ns, name, figs) })
	if t.Failed() {
		return nil
	}
	if got := e.mustClient(t, ns, "get-after-scale", "", clientURL, "get", "/greeting", "--print-value-only"); got != "written-at-3" {
		t.Errorf("after 3 -> 5 -> 3 the key holds %q, want written-at-3", got)
	}

	t.Run("member pod deleted", func(t *testing.T) { testPodDeleted(t, e, ns, name, figs) })
	t.Run("member volume lost", func(t *testing.T) { testVolumeLost(t, e, ns, name, figs) })
	t.Run("backup", func(t *testing.T) { testBackup(t, e, ns, name) })
	t.Run("quorum lost and recovered", func(t *testing.T) { testQuorumLossRecovered(t, e, ns, name, figs) })
	if t.Failed() {
		return nil
	}
	return &lifecycleInstance{ns: ns, name: name}
}

// checkPodsReady checks that the instance's pods are exactly 0..n-1, all Ready, once the
// pods of removed members have terminated.
func (e *etcdaasInstall) checkPodsReady(t *testing.T, ns, name string, n int) {
	t.Helper()
	err := framework.Poll(t.Context(), 250*time.Millisecond, time.Minute, fmt.Sprintf("pods %s-0..%d Ready, no other", name, n-1), func(ctx context.Context) (bool, error) {
		pods, err := e.c.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + name})
		if err != nil {
			return false, err
		}
		ready := map[string]bool{}
		for _, p := range pods.Items {
			ready[p.Name] = false
			for _, c := range p.Status.Conditions {
				if c.Type == "Ready" && c.Status == "True" {
					ready[p.Name] = true
				}
			}
		}
		for i := range n {
			if !ready[fmt.Sprintf("%s-%d", name, i)] {
				return false, fmt.Errorf("pod %s-%d is not Ready (pods: %v)", name, i, ready)
			}
		}
		if len(ready) != n {
			return false, fmt.Errorf("%d pods, want %d: %v", len(ready), n, ready)
		}
		return true, nil
	})
	if err != nil {
		t.Error(err)
	}
}

// scaleObserver checks, on every status read of a scale, that at most one learner exists
// at a time and that the members are always ordinals 0..n-1 (so removals take the highest
// ordinal first and additions the next one).
type scaleObserver struct {
	t          *testing.T
	maxLearner int
	sizes      []int
}

func (o *scaleObserver) observe(inst *v1beta1.ETCDInstance) {
	learners := 0
	for i, m := range inst.Status.Members {
		if m.Learner {
			learners++
		}
		if want := inst.Name + "-" + strconv.Itoa(i); m.Name != want {
			o.t.Errorf("member %d is %s, want %s (members must be the lowest ordinals): %s", i, m.Name, want, describe(inst))
		}
	}
	o.maxLearner = max(o.maxLearner, learners)
	if n := len(inst.Status.Members); len(o.sizes) == 0 || o.sizes[len(o.sizes)-1] != n {
		o.sizes = append(o.sizes, n)
	}
}

func testScale(t *testing.T, e *etcdaasInstall, ns, name string, figs *figures) {
	for _, step := range []struct {
		kubectl string
		to      int
	}{{skewKubectl, 5}, {e.c.Tools[framework.Kubectl], 3}} {
		k := e.kubectl(step.kubectl)
		from := len(mustInstance(t, e, ns, name).Status.Members)
		start := time.Now()
		mustRun(t, k, "", "scale", "etcdinstances.etcdaas.dev/"+name, "-n", ns, "--replicas="+strconv.Itoa(step.to))
		o := &scaleObserver{t: t}
		if _, err := e.waitSettled(t.Context(), ns, name, step.to, 4*time.Minute, o.observe); err != nil {
			dumpNamespace(t, e.c, ns)
			t.Fatal(err)
		}
		version, err := k.Version(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		figs.add(t, fmt.Sprintf("scale %d -> %d (kubectl %s)", from, step.to, version), time.Since(start))
		if o.maxLearner > 1 {
			t.Errorf("scale %d -> %d: %d learners at once, want one at a time", from, step.to, o.maxLearner)
		}
		if !monotonic(o.sizes) {
			t.Errorf("scale %d -> %d: member counts went %v, want one direction", from, step.to, o.sizes)
		}
		e.checkPodsReady(t, ns, name, step.to)
	}
}

// monotonic reports whether sampled member counts only move in one direction (a sample
// may miss a step; the members being ordinals 0..n-1 at every sample is checked apart).
func monotonic(sizes []int) bool {
	dir := 0
	for i := 1; i < len(sizes); i++ {
		d := sizes[i] - sizes[i-1]
		if d*dir < 0 {
			return false
		}
		if d != 0 {
			dir = d
		}
	}
	return true
}

func mustInstance(t *testing.T, e *etcdaasInstall, ns, name string) *v1beta1.ETCDInstance {
	t.Helper()
	inst, err := e.getInstance(t.Context(), ns, name)
	if err != nil {
		t.Fatal(err)
	}
	return inst
}

func testPodDeleted(t *testing.T, e *etcdaasInstall, ns, name string, figs *figures) {
	victim := name + "-1"
	member := fmt.Sprintf("--endpoints=http://%s.%s-peers.%s.svc.cluster.local:2379", victim, name, ns)
	e.mustClient(t, ns, "put-before-kill", "", member, "put", "/before-pod-delete", "kept")
	old, err := e.c.Kube.CoreV1().Pods(ns).Get(t.Context(), victim, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	mustRun(t, e.kubectl(skewKubectl), "", "delete", "pod", victim, "-n", ns, "--wait=false")
	err = framework.Poll(t.Context(), 250*time.Millisecond, 3*time.Minute, victim+" back and Ready", func(ctx context.Context) (bool, error) {
		p, err := e.c.Kube.CoreV1().Pods(ns).Get(ctx, victim, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if p.UID == old.UID {
			return false, fmt.Errorf("old pod still there")
		}
		for _, c := range p.Status.Conditions {
			if c.Type == "Ready" && c.Status == "True" {
				return true, nil
			}
		}
		return false, fmt.Errorf("new pod not Ready: %s", p.Status.Phase)
	})
	if err != nil {
		dumpNamespace(t, e.c, ns)
		t.Fatal(err)
	}
	figs.add(t, "member pod deleted -> Ready", time.Since(start))
	// A serializable read answers from the member's own data.
	if got := e.mustClient(t, ns, "get-after-kill", "", member, "get", "/before-pod-delete", "--consistency=s", "--print-value-only"); got != "kept" {
		t.Errorf("%s came back without its data: /before-pod-delete = %q", victim, got)
	}
	if _, err := e.waitSettled(t.Context(), ns, name, 3, 2*time.Minute, nil); err != nil {
		t.Fatal(err)
	}
}

func testBackup(t *testing.T, e *etcdaasInstall, ns, name string) {
	file := filepath.Join(t.TempDir(), "backup.db")
	out := mustRun(t, e.kubectl(e.c.Tools[framework.Kubectl]), "", "etcdaas", "backup", name, "-n", ns, "-o", file)
	st, err := os.Stat(file)
	if err != nil {
		t.Fatalf("kubectl etcdaas backup wrote no file: %v (%s)", err, out)
	}
	status, err := exec.CommandContext(t.Context(), e.c.Tools[framework.Etcdutl], "snapshot", "status", file, "-w", "json").CombinedOutput()
	if err != nil {
		t.Fatalf("etcdutl snapshot status rejects the backup: %v\n%s", err, status)
	}
	if !strings.Contains(string(status), `"totalKey"`) {
		t.Errorf("etcdutl snapshot status: %s", status)
	}
	t.Logf("backup through the aggregator: %d bytes; etcdutl: %s", st.Size(), strings.TrimSpace(string(status)))
}

func testDelete(t *testing.T, e *etcdaasInstall, ns, name string) {
	inst := mustInstance(t, e, ns, name)
	mustRun(t, e.kubectl(skewKubectl), "", "delete", "etcdinstances.etcdaas.dev", name, "-n", ns, "--wait=true", "--timeout=2m")
	err := framework.Poll(t.Context(), 500*time.Millisecond, 3*time.Minute, "owned objects garbage collected", func(ctx context.Context) (bool, error) {
		left, err := ownedObjects(ctx, e.c, ns, name, inst.UID)
		if err != nil {
			return false, err
		}
		if len(left) > 0 {
			return false, fmt.Errorf("still there: %v", left)
		}
		return true, nil
	})
	if err != nil {
		dumpNamespace(t, e.c, ns)
		t.Fatal(err)
	}
}
