package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/test/e2e/framework"
)

const upgradeManifest = `apiVersion: etcdaas.dev/v1beta1
kind: ETCDInstance
metadata:
  name: %s
  namespace: %s
spec:
  replicas: 3
  version: "%s"
  resources:
    requests: {cpu: 50m, memory: 64Mi}
    limits: {memory: 512Mi}
`

// rolledResources is what the roll also applies, in the same patch as the new version.
const rolledResources = `{"requests":{"cpu":"75m","memory":"96Mi"},"limits":{"memory":"640Mi"}}`

// testRollingUpgrade creates a 3-member instance on the previous etcd patch release (its
// own image, built here by the project's image builder), writes keys, has a downgrade and a skipped minor refused,
// then sets spec.version to the current release and spec.resources to others in one patch,
// and checks the roll: members restart one at a time (each restarted pod created only after the member restarted before reported the
// new version, from the MemberUpgraded Events), the leader last (unless an election gave
// leadership to an upgraded member meanwhile), every member then reports
// the new release (in the status and to etcdctl), every pod has the new requests and limits
// (it had the first ones before) and the keys are intact.
func testRollingUpgrade(t *testing.T, e *etcdaasInstall, figs *figures) {
	const ns, name = "upgrade", "u1"
	ctx := t.Context()
	buildCtx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	built := time.Now()
	previous, err := e.c.BuildPreviousEtcdImage(buildCtx)
	if err != nil {
		t.Fatal(err)
	}
	figs.add(t, "previous etcd image built and imported", time.Since(built))
	from, to := releaseOf(t, previous), releaseOf(t, e.c.Images.Etcd)
	e.createNamespace(t, ns)
	pinned := e.kubectl(e.c.Tools[framework.Kubectl])

	mustRun(t, pinned, fmt.Sprintf(upgradeManifest, name, ns, from), "apply", "-f", "-")
	inst, err := e.waitVersion(ctx, ns, name, from, 4*time.Minute, nil)
	if err != nil {
		dumpNamespace(t, e.c, ns)
		t.Fatal(err)
	}
	e.checkMemberResources(t, ns, name, "requests cpu=50m memory=64Mi, limits memory=512Mi")
	clientURL := fmt.Sprintf("--endpoints=http://%s.%s.svc.cluster.local:2379", name, ns)
	e.mustClient(t, ns, "put-before-upgrade", "", clientURL, "put", "/upgrade/written-on", from)

	checkVersionChangesRefused(t, pinned, ns, name, from)

	leader := leaderOf(inst)
	start := time.Now()
	mustRun(t, pinned, "", "patch", "etcdinstances.etcdaas.dev", name, "-n", ns, "--type=merge", "-p", `{"spec":{"version":"`+to+`","resources":`+rolledResources+`}}`)
	var roll rollObserver
	inst, err = e.waitVersion(ctx, ns, name, to, 6*time.Minute, roll.observe)
	if err != nil {
		dumpNamespace(t, e.c, ns)
		t.Fatal(err)
	}
	figs.add(t, fmt.Sprintf("upgrade %s -> %s (3 members)", from, to), time.Since(start))
	roll.check(t, "the upgrade")
	e.checkRollOrder(t, ns, name, leader, start)
	e.checkMemberResources(t, ns, name, "requests cpu=75m memory=96Mi, limits memory=640Mi")

	if got := e.mustClient(t, ns, "get-after-upgrade", "", clientURL, "get", "/upgrade/written-on", "--print-value-only"); got != from {
		t.Errorf("after the upgrade /upgrade/written-on = %q, want %q", got, from)
	}
	checkMembersReportVersion(t, e, ns, inst, to)
	t.Run("failed roll", func(t *testing.T) { testFailedRoll(t, e, ns, name, to, figs) })
	mustRun(t, pinned, "", "delete", "etcdinstances.etcdaas.dev", name, "-n", ns, "--wait=true", "--timeout=2m")
}

// checkVersionChangesRefused checks that a downgrade of instance ns/name from version from,
// and an upgrade that skips a minor version, are refused against what the members report,
// through the aggregator.
func checkVersionChangesRefused(t *testing.T, pinned framework.KubectlClient, ns, name, from string) {
	t.Helper()
	for version, want := range map[string]string{"3.6": "downgrades are not supported", "3.9": "skips a minor version"} {
		r := pinned.Run(t.Context(), "", "patch", "etcdinstances.etcdaas.dev", name, "-n", ns, "--type=merge", "-p", `{"spec":{"version":"`+version+`"}}`)
		if r.Err == nil || !strings.Contains(r.Stderr, "spec.version") || !strings.Contains(r.Stderr, want) {
			t.Errorf("spec.version %s -> %s: %s; want a refusal saying %q", from, version, r, want)
		}
	}
}

// checkMembersReportVersion checks that each of the 3 members of inst (in namespace ns)
// reports etcd version to etcdctl.
func checkMembersReportVersion(t *testing.T, e *etcdaasInstall, ns string, inst *v1beta1.ETCDInstance, version string) {
	t.Helper()
	var endpoints []string
	for _, m := range inst.Status.Members {
		endpoints = append(endpoints, m.ClientURL)
	}
	out := e.mustClient(t, ns, "status-after-upgrade", "", "--endpoints="+strings.Join(endpoints, ","), "endpoint", "status", "-w", "json")
	var statuses []struct {
		Endpoint string `json:"Endpoint"`
		Status   struct {
			Version string `json:"version"`
		} `json:"Status"`
	}
	if err := json.Unmarshal([]byte(out), &statuses); err != nil || len(statuses) != 3 {
		t.Fatalf("etcdctl endpoint status: %v\n%s", err, out)
	}
	for _, st := range statuses {
		if st.Status.Version != version {
			t.Errorf("%s reports etcd %s to etcdctl, want %s", st.Endpoint, st.Status.Version, version)
		}
	}
}

// releaseOf is the release an etcd image of the harness holds: its tag without the "v".
func releaseOf(t *testing.T, image string) string {
	t.Helper()
	_, tag, ok := strings.Cut(image, ":")
	if !ok || !strings.HasPrefix(tag, "v") {
		t.Fatalf("etcd image %q has no release tag", image)
	}
	return strings.TrimPrefix(tag, "v")
}

// waitVersion waits until the instance runs 3 ready voting members that all report version,
// with nothing in progress.
func (e *etcdaasInstall) waitVersion(ctx context.Context, ns, name, version string, timeout time.Duration, observe func(*v1beta1.ETCDInstance)) (*v1beta1.ETCDInstance, error) {
	var last *v1beta1.ETCDInstance
	err := framework.Poll(ctx, 500*time.Millisecond, timeout, fmt.Sprintf("%s/%s: 3 members on etcd %s", ns, name, version), func(ctx context.Context) (bool, error) {
		inst, err := e.getInstance(ctx, ns, name)
		if err != nil {
			return false, err
		}
		last = inst
		if observe != nil {
			observe(inst)
		}
		var versions []string
		for _, m := range inst.Status.Members {
			versions = append(versions, m.Name+"="+m.Version)
		}
		converged := false
		for _, c := range inst.Status.Conditions {
			if c.Type == "Progressing" && c.Status == metav1.ConditionFalse && c.Reason == "Converged" {
				converged = true
			}
		}
		if !settled(inst, 3) || !converged || slices.ContainsFunc(inst.Status.Members, func(m v1beta1.MemberStatus) bool { return m.Version != version }) {
			return false, fmt.Errorf("versions %v; %s", versions, describe(inst))
		}
		return true, nil
	})
	return last, err
}

// checkRollOrder checks, from the MemberUpgraded Events since start and the member pods,
// that every member was upgraded once, none but the last flagged as the leader (the leader
// goes last, after its leadership moved away; the last is not flagged when an election gave
// leadership to an upgraded member during the roll), and that each restarted pod was
// created only after the member upgraded before it reported the new version.
func (e *etcdaasInstall) checkRollOrder(t *testing.T, ns, name, leaderBefore string, start time.Time) {
	t.Helper()
	ctx := t.Context()
	evs, err := e.c.Kube.EventsV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	type upgraded struct {
		member string
		leader bool
		at     time.Time
	}
	var order []upgraded
	for _, ev := range evs.Items {
		if ev.Regarding.Name != name || ev.Reason != "MemberUpgraded" || ev.EventTime.Time.Before(start.Add(-time.Second)) {
			continue
		}
		member, _, _ := strings.Cut(strings.TrimPrefix(ev.Note, "Member "), " ")
		order = append(order, upgraded{member: member, leader: strings.Contains(ev.Note, "the leader"), at: ev.EventTime.Time})
	}
	slices.SortFunc(order, func(a, b upgraded) int { return a.at.Compare(b.at) })
	var names []string
	for _, u := range order {
		names = append(names, u.member)
	}
	t.Logf("MemberUpgraded order: %v (leader before the roll: %s)", names, leaderBefore)
	if len(order) != 3 || len(slices.Compact(slices.Sorted(slices.Values(names)))) != 3 {
		t.Fatalf("MemberUpgraded Events for %v, want each of the 3 members once", names)
	}
	for i, u := range order[:2] {
		if u.leader {
			t.Errorf("MemberUpgraded %d of 3 (%s) was the leader when restarted: followers go first, the leader last", i+1, u.member)
		}
	}
	// The roll restarts the followers first and the leader last, leadership moved away first:
	// the last member restarted is flagged the leader when it led then. It did not when an
	// election during the roll (not one the roll causes) had given leadership to a member
	// already upgraded: there was then no leadership to move, and nothing is wrong.
	switch last := order[2]; {
	case !last.leader:
		t.Logf("leadership changed during the roll: %s led before, and an upgraded member led when %s, upgraded last, was restarted", leaderBefore, last.member)
	case last.member != leaderBefore:
		t.Logf("leadership changed during the roll: %s led before, %s was upgraded last as the leader", leaderBefore, last.member)
	}
	pods, err := e.c.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + name})
	if err != nil {
		t.Fatal(err)
	}
	created := map[string]time.Time{}
	for _, p := range pods.Items {
		created[p.Name] = p.CreationTimestamp.Time
		if img := etcdImageOf(p); !strings.HasSuffix(img, ":v"+releaseOf(t, e.c.Images.Etcd)) {
			t.Errorf("pod %s runs %s after the upgrade", p.Name, img)
		}
	}
	for i := 1; i < len(order); i++ {
		// Creation times have a resolution of one second.
		if created[order[i].member].Before(order[i-1].at.Truncate(time.Second)) {
			t.Errorf("pod %s was created at %s, before %s was upgraded at %s: not one at a time",
				order[i].member, created[order[i].member].Format(time.RFC3339), order[i-1].member, order[i-1].at.Format(time.RFC3339Nano))
		}
	}
}

func etcdImageOf(p corev1.Pod) string {
	for _, c := range p.Spec.Containers {
		if c.Name == "etcd" {
			return c.Image
		}
	}
	return ""
}

// checkMemberResources checks that every member pod's etcd container has the requests and
// limits want describes ("requests cpu=50m memory=64Mi, limits memory=512Mi").
func (e *etcdaasInstall) checkMemberResources(t *testing.T, ns, name, want string) {
	t.Helper()
	pods, err := e.c.Kube.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + name})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 3 {
		t.Fatalf("%d member pods, want 3", len(pods.Items))
	}
	for _, p := range pods.Items {
		for _, c := range p.Spec.Containers {
			if got := describeResources(c.Resources); c.Name == "etcd" && got != want {
				t.Errorf("pod %s: %s, want %s", p.Name, got, want)
			}
		}
	}
}

// describeResources says a container's resources as checkMemberResources takes them.
func describeResources(r corev1.ResourceRequirements) string {
	describe := func(list corev1.ResourceList) string {
		var out []string
		for name, q := range list {
			out = append(out, fmt.Sprintf("%s=%s", name, q.String()))
		}
		slices.Sort(out)
		return strings.Join(out, " ")
	}
	return fmt.Sprintf("requests %s, limits %s", describe(r.Requests), describe(r.Limits))
}
