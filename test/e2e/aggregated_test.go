package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/etcdaas/etcdaas/test/e2e/framework"
)

func TestMain(m *testing.M) {
	code := m.Run()
	framework.CleanupBuild()
	os.Exit(code)
}

// TestAggregated runs etcdaas behind a real kube-apiserver and drives it through the
// aggregator. The subtests share one control plane and run in order; the restart comes
// last but one, the log audit last.
func TestAggregated(t *testing.T) {
	audit, auditLog := auditArgs(t)
	c := framework.StartClusterWith(t, framework.ClusterOptions{Controller: true, EtcdaasAPIServerArgs: audit})
	kubectls := kubectlBinaries(t, c)
	for _, k := range kubectls {
		t.Logf("kubectl %s at %s", k.Version, k.Path)
	}

	t.Run("APIServicesAvailable", func(t *testing.T) { testAPIServices(t, c) })
	t.Run("Discovery", func(t *testing.T) {
		for _, k := range kubectls {
			t.Run("kubectl-"+k.Version, func(t *testing.T) { testDiscovery(t, c, k) })
		}
	})
	t.Run("KubectlScenario", func(t *testing.T) {
		for i, k := range kubectls {
			t.Run("kubectl-"+k.Version, func(t *testing.T) { testKubectlScenario(t, c, k, fmt.Sprintf("e2e-kubectl-%d", i)) })
		}
	})
	t.Run("Plugin", func(t *testing.T) { testPlugin(t, c) })
	t.Run("Observability", func(t *testing.T) { testObservability(t, c, kubectls) })
	t.Run("Auth", func(t *testing.T) { testAuth(t, c) })
	t.Run("AuditUser", func(t *testing.T) { testAuditUser(t, c, auditLog) })
	t.Run("AuthorizationMatrix", func(t *testing.T) { testAuthorizationMatrix(t, c) })
	t.Run("Transport", func(t *testing.T) { testTransport(t, c) })
	t.Run("AdmissionPolicy", func(t *testing.T) { testAdmissionPolicy(t, c) })
	t.Run("AdmissionWebhooks", func(t *testing.T) { testAdmissionWebhooks(t, c) })
	t.Run("MutatingAdmissionPolicy", func(t *testing.T) { testMutatingAdmissionPolicy(t, c) })
	t.Run("ConnectPolicy", func(t *testing.T) { testConnectPolicy(t, c) })
	t.Run("Quota", func(t *testing.T) { testQuota(t, c) })
	t.Run("NamespaceLifecycle", func(t *testing.T) { testNamespaceLifecycle(t, c) })
	t.Run("NamespaceDeletion", func(t *testing.T) { testNamespaceDeletion(t, c) })
	t.Run("GarbageCollection", func(t *testing.T) { testGarbageCollection(t, c) })
	t.Run("DeployDryRun", func(t *testing.T) { testDeployDryRun(t, c) })
	t.Run("RestartAPIServer", func(t *testing.T) { testRestartAPIServer(t, c) })
	t.Run("NoForbiddenInLogs", func(t *testing.T) { testNoForbidden(t, c) })
}

// testAPIServices checks both APIServices are Available, reference the Service with a
// caBundle, and that discovery prefers v1beta1.
func testAPIServices(t *testing.T, c *framework.Cluster) {
	for _, name := range framework.APIServiceNames {
		ok, why, err := c.APIServiceAvailable(t.Context(), name)
		if err != nil || !ok {
			t.Fatalf("APIService %s not Available: %s %v", name, why, err)
		}
		u, err := c.Dynamic.Resource(framework.APIServiceGVR).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		spec := u.Object["spec"].(map[string]any)
		if spec["insecureSkipTLSVerify"] == true || spec["caBundle"] == nil || spec["caBundle"] == "" {
			t.Errorf("APIService %s must verify TLS with a caBundle: %v", name, spec)
		}
	}
	k := c.AdminKubectl()
	var group metav1.APIGroup
	if err := json.Unmarshal([]byte(mustRun(t, k, "", "get", "--raw", "/apis/etcdaas.dev")), &group); err != nil {
		t.Fatal(err)
	}
	if group.PreferredVersion.Version != "v1beta1" {
		t.Errorf("preferred version %q, want v1beta1", group.PreferredVersion.Version)
	}
	var versions []string
	for _, v := range group.Versions {
		versions = append(versions, v.Version)
	}
	if !slices.Equal(versions, []string{"v1beta1", "v1alpha1"}) {
		t.Errorf("versions %v, want [v1beta1 v1alpha1] in that order", versions)
	}
	out := mustRun(t, k, "", "api-versions")
	for _, gv := range []string{"etcdaas.dev/v1alpha1", "etcdaas.dev/v1beta1"} {
		if !strings.Contains(out, gv+"\n") {
			t.Errorf("kubectl api-versions lacks %s:\n%s", gv, out)
		}
	}
}

// testDiscovery checks kubectl api-resources lists etcdinstances with short name etcd in
// both versions, and the subresources are discovered.
func testDiscovery(t *testing.T, c *framework.Cluster, nk namedKubectl) {
	k := framework.KubectlClient{Path: nk.Path, Kubeconfig: c.AdminKubeconfig}
	out := mustRun(t, k, "", "api-resources", "--api-group=etcdaas.dev", "--no-headers")
	fields := strings.Fields(out)
	if want := []string{"etcdinstances", "etcd", "etcdaas.dev/v1beta1", "true", "ETCDInstance"}; !slices.Equal(fields, want) {
		t.Errorf("api-resources: got %q, want %q", fields, want)
	}
	out = mustRun(t, k, "", "api-resources", "--categories=etcdaas", "-o", "name")
	if strings.TrimSpace(out) != "etcdinstances.etcdaas.dev" {
		t.Errorf("category etcdaas: got %q", out)
	}
	for _, version := range []string{"v1beta1", "v1alpha1"} {
		var list metav1.APIResourceList
		if err := json.Unmarshal([]byte(mustRun(t, k, "", "get", "--raw", "/apis/etcdaas.dev/"+version)), &list); err != nil {
			t.Fatal(err)
		}
		found := map[string]metav1.APIResource{}
		for _, r := range list.APIResources {
			found[r.Name] = r
		}
		for _, name := range []string{"etcdinstances", "etcdinstances/status", "etcdinstances/scale", "etcdinstances/backup"} {
			if _, ok := found[name]; !ok {
				t.Errorf("%s discovery lacks %s: %v", version, name, list.APIResources)
			}
		}
		if s := found["etcdinstances/scale"]; s.Group != "autoscaling" || s.Version != "v1" || s.Kind != "Scale" {
			t.Errorf("%s etcdinstances/scale is %s/%s %s, want autoscaling/v1 Scale", version, s.Group, s.Version, s.Kind)
		}
		if r := found["etcdinstances"]; !slices.Contains(r.ShortNames, "etcd") {
			t.Errorf("%s etcdinstances short names %v lack etcd", version, r.ShortNames)
		}
	}
}

const scenarioAlpha = `apiVersion: etcdaas.dev/v1alpha1
kind: ETCDInstance
metadata:
  name: legacy
spec:
  replicas: 1
  with_tls_bundle: false
`

const scenarioBeta = `apiVersion: etcdaas.dev/v1beta1
kind: ETCDInstance
metadata:
  name: current
spec:
  replicas: 1
  version: "3.7"
  storage:
    size: 1Gi
`

// testKubectlScenario is the kubectl scenario of the server, now through the aggregator.
func testKubectlScenario(t *testing.T, c *framework.Cluster, nk namedKubectl, ns string) {
	createNamespace(t, c, ns)
	k := framework.KubectlClient{Path: nk.Path, Kubeconfig: c.AdminKubeconfig}
	n := "--namespace=" + ns

	if out := mustRun(t, k, scenarioAlpha, "apply", n, "-f", "-"); !strings.Contains(out, "etcdinstance.etcdaas.dev/legacy created") {
		t.Errorf("apply v1alpha1: %q", out)
	}
	if out := mustRun(t, k, scenarioBeta, "apply", n, "-f", "-"); !strings.Contains(out, "etcdinstance.etcdaas.dev/current created") {
		t.Errorf("apply v1beta1: %q", out)
	}
	checkScenarioTable(t, k, n)
	checkScenarioVersions(t, k, n)
	checkScenarioScale(t, k, n)
	checkScenarioEdit(t, k, n)
	checkScenarioExplain(t, k)
	checkScenarioServerSideApply(t, k, n)

	// Delete: the controller's finalizer goes and the objects with it.
	out := mustRun(t, k, "", "delete", "etcd", "legacy", "current", "applied", "applied-alpha", n, "--timeout=120s")
	if strings.Count(out, "deleted") != 4 {
		t.Errorf("delete: %q", out)
	}
	if out := mustRun(t, k, "", "get", "etcd", n, "-o", "name"); strings.TrimSpace(out) != "" {
		t.Errorf("left after delete: %q", out)
	}
}

// checkScenarioTable checks kubectl get's table: columns from the server, both objects.
func checkScenarioTable(t *testing.T, k framework.KubectlClient, n string) {
	t.Helper()
	out := mustRun(t, k, "", "get", "etcd", n)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	header := strings.Fields(lines[0])
	if want := []string{"NAME", "REPLICAS", "READY", "PHASE", "VERSION", "AGE"}; !slices.Equal(header, want) {
		t.Errorf("get etcd columns %q, want %q\n%s", header, want, out)
	}
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "current ") || !strings.HasPrefix(lines[2], "legacy ") {
		t.Errorf("get etcd rows:\n%s", out)
	}
	// v1beta1 defaulted through v1alpha1 then stored; replicas 1 for both.
	if got := strings.Fields(lines[1]); len(got) < 2 || got[1] != "1" {
		t.Errorf("current replicas column: %q", lines[1])
	}
}

// checkScenarioVersions reads the v1beta1 object as v1alpha1 (the original wire format, and
// nothing else) and back as v1beta1 (nothing lost).
func checkScenarioVersions(t *testing.T, k framework.KubectlClient, n string) {
	t.Helper()
	out := mustRun(t, k, "", "get", "etcdinstances.v1alpha1.etcdaas.dev", "current", n, "-o", "yaml")
	var alpha struct {
		APIVersion string         `json:"apiVersion"`
		Spec       map[string]any `json:"spec"`
		Status     map[string]any `json:"status"`
	}
	if err := yaml.Unmarshal([]byte(out), &alpha); err != nil {
		t.Fatalf("v1alpha1 yaml: %v\n%s", err, out)
	}
	if alpha.APIVersion != "etcdaas.dev/v1alpha1" || alpha.Spec["replicas"] != float64(1) {
		t.Errorf("v1alpha1 view of current:\n%s", out)
	}
	for key := range alpha.Spec {
		if key != "replicas" && key != "with_tls_bundle" {
			t.Errorf("v1alpha1 spec has a field the original API does not: %q\n%s", key, out)
		}
	}
	for key := range alpha.Status {
		if key != "state" && key != "message" {
			t.Errorf("v1alpha1 status has a field the original API does not: %q\n%s", key, out)
		}
	}
	// And back as v1beta1: nothing lost.
	out = mustRun(t, k, "", "get", "etcdinstances.v1beta1.etcdaas.dev", "current", n, "-o", "jsonpath={.spec.version} {.spec.storage.size}")
	if out != "3.7 1Gi" {
		t.Errorf("v1beta1 spec after a v1alpha1 read: %q", out)
	}
}

// checkScenarioScale scales through the scale subresource, within and beyond the limit.
func checkScenarioScale(t *testing.T, k framework.KubectlClient, n string) {
	t.Helper()
	if out := mustRun(t, k, "", "scale", "etcdinstance", "current", n, "--replicas=5"); !strings.Contains(out, "scaled") {
		t.Errorf("scale: %q", out)
	}
	if out := mustRun(t, k, "", "get", "etcdinstances.v1alpha1.etcdaas.dev", "current", n, "-o", "jsonpath={.spec.replicas}"); out != "5" {
		t.Errorf("replicas after scale seen in v1alpha1: %q", out)
	}
	if out := mustRun(t, k, "", "get", "etcd", "current", n, "-o", "jsonpath={.spec.replicas}"); out != "5" {
		t.Errorf("replicas after scale seen in v1beta1: %q", out)
	}
	// The server refuses 10 members (422) through the scale subresource too.
	if stderr := mustFail(t, k, "", "scale", "etcdinstance", "current", n, "--replicas=10"); !strings.Contains(stderr, "replicas") {
		t.Errorf("scale to 10: %q", stderr)
	}
	// Back to one member so the controller does not keep five embedded members busy.
	mustRun(t, k, "", "scale", "etcdinstance", "current", n, "--replicas=1")
}

// checkScenarioEdit edits as an old client would, in v1alpha1, with a scripted editor.
func checkScenarioEdit(t *testing.T, k framework.KubectlClient, n string) {
	t.Helper()
	editor := writeTemp(t, "editor.sh", "#!/bin/sh\nsed -i 's/^  replicas: 1$/  replicas: 3/' \"$1\"\n")
	if err := os.Chmod(editor, 0o755); err != nil {
		t.Fatal(err)
	}
	ke := k
	ke.Env = []string{"KUBE_EDITOR=" + editor, "EDITOR=" + editor}
	if out := mustRun(t, ke, "", "edit", "etcdinstances.v1alpha1.etcdaas.dev", "legacy", n); !strings.Contains(out, "edited") {
		t.Errorf("edit: %q", out)
	}
	if out := mustRun(t, k, "", "get", "etcd", "legacy", n, "-o", "jsonpath={.spec.replicas}"); out != "3" {
		t.Errorf("replicas after a v1alpha1 edit, seen in v1beta1: %q", out)
	}
}

// checkScenarioExplain runs kubectl explain in both versions.
func checkScenarioExplain(t *testing.T, k framework.KubectlClient) {
	t.Helper()
	// explain in both versions, from the aggregated OpenAPI v3 (it follows Available by
	// about a second).
	pollKubectl(t, k, 60*time.Second, contains("ETCDInstanceSpec", "replicas", "Replicas is the number of etcd members", "tls", "storage"),
		"explain", "etcdinstances.spec")
	pollKubectl(t, k, 60*time.Second, contains("with_tls_bundle", "replicas"),
		"explain", "etcdinstances.spec", "--api-version=etcdaas.dev/v1alpha1")
	pollKubectl(t, k, 60*time.Second, contains("etcdaas.dev", "v1beta1", "ETCDInstance"), "explain", "etcd")
}

// checkScenarioServerSideApply checks that two managers conflict on spec.replicas until one
// forces, and that an old client applies with the field names of the original API.
func checkScenarioServerSideApply(t *testing.T, k framework.KubectlClient, n string) {
	t.Helper()
	// Server-side apply: two managers conflict on spec.replicas until one forces.
	ssa := `apiVersion: etcdaas.dev/v1beta1
kind: ETCDInstance
metadata:
  name: applied
spec:
  replicas: 1
`
	mustRun(t, k, ssa, "apply", n, "--server-side", "--field-manager=e2e-first", "-f", "-")
	other := strings.Replace(ssa, "replicas: 1", "replicas: 3", 1)
	if stderr := mustFail(t, k, other, "apply", n, "--server-side", "--field-manager=e2e-second", "-f", "-"); !strings.Contains(stderr, "conflict") || !strings.Contains(stderr, "e2e-first") {
		t.Errorf("expected a conflict with e2e-first: %q", stderr)
	}
	mustRun(t, k, other, "apply", n, "--server-side", "--field-manager=e2e-second", "--force-conflicts", "-f", "-")
	out := mustRun(t, k, "", "get", "etcd", "applied", n, "-o", "jsonpath={.spec.replicas} {.metadata.managedFields[*].manager}")
	if !strings.HasPrefix(out, "3 ") || !strings.Contains(out, "e2e-second") {
		t.Errorf("after forced apply: %q", out)
	}
	// The same apply in v1alpha1 by an old client: the field names of the original API.
	alphaSSA := "apiVersion: etcdaas.dev/v1alpha1\nkind: ETCDInstance\nmetadata:\n  name: applied-alpha\nspec:\n  replicas: 1\n  with_tls_bundle: false\n"
	mustRun(t, k, alphaSSA, "apply", n, "--server-side", "--field-manager=e2e-old-client", "-f", "-")
}

// testPlugin drives kubectl-etcdaas through kubectl's plugin mechanism and the aggregator.
func testPlugin(t *testing.T, c *framework.Cluster) {
	const ns = "e2e-plugin"
	createNamespace(t, c, ns)
	k := c.AdminKubectl()
	k.Env = []string{"PATH=" + c.OurBin + string(os.PathListSeparator) + os.Getenv("PATH")}
	if out := mustRun(t, k, "", "plugin", "list", "--name-only"); !strings.Contains(out, "kubectl-etcdaas") {
		t.Fatalf("kubectl does not find the plugin: %q", out)
	}
	mustRun(t, k, "", "etcdaas", "create", "plugged", "-n", ns, "--replicas", "1")
	if out := mustRun(t, k, "", "etcdaas", "list", "-n", ns); !strings.Contains(out, "plugged") {
		t.Errorf("etcdaas list: %q", out)
	}
	waitRunning(t, c, ns, "plugged", 2*time.Minute)
	if out := mustRun(t, k, "", "etcdaas", "get", "plugged", "-n", ns); !strings.Contains(out, "plugged") || !strings.Contains(out, "Running") {
		t.Errorf("etcdaas get: %q", out)
	}
	if stderr := mustFail(t, k, "", "etcdaas", "get", "absent", "-n", ns); !strings.Contains(stderr, "not found") {
		t.Errorf("etcdaas get of a missing instance: %q", stderr)
	}
	mustRun(t, k, "", "etcdaas", "delete", "plugged", "-n", ns)
	waitGone(t, c, ns, "plugged", 2*time.Minute)
}

// testObservability checks that the controller's steps are events.k8s.io Events in the
// cluster that kubectl describe (every kubectl tested) shows through the aggregator, and that
// the controller's /metrics reports the instance.
func testObservability(t *testing.T, c *framework.Cluster, kubectls []namedKubectl) {
	const ns = "e2e-observability"
	createNamespace(t, c, ns)
	k := c.AdminKubectl()
	mustRun(t, k, "apiVersion: etcdaas.dev/v1beta1\nkind: ETCDInstance\nmetadata:\n  name: watched\nspec:\n  replicas: 1\n", "apply", "-n", ns, "-f", "-")
	waitRunning(t, c, ns, "watched", 2*time.Minute)

	events, err := c.Kube.EventsV1().Events(ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range events.Items {
		if e.Reason == "MemberAdded" && e.Action == "AddMember" && e.ReportingController == "etcdaas-controller" && e.Regarding.Kind == "ETCDInstance" && e.Regarding.Name == "watched" {
			found = true
		}
	}
	if !found {
		t.Errorf("no events.k8s.io/v1 MemberAdded Event regarding watched: %+v", events.Items)
	}
	for _, nk := range kubectls {
		t.Run("kubectl-"+nk.Version, func(t *testing.T) {
			k := framework.KubectlClient{Path: nk.Path, Kubeconfig: c.AdminKubeconfig}
			pollKubectl(t, k, 30*time.Second, contains("Events:", "MemberAdded", "Started the first member watched-0", "etcdaas-controller"),
				"describe", "etcd", "watched", "-n", ns)
		})
	}

	resp, err := http.Get("http://" + framework.HostPort(c.ControllerMetricsPort) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	members := -1.0
	for _, m := range families["etcdaas_instance_members"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["namespace"] == ns && labels["name"] == "watched" {
			members = m.GetGauge().GetValue()
		}
	}
	if members != 1 {
		t.Errorf("etcdaas_instance_members of watched = %v, want 1", members)
	}
	mustRun(t, k, "", "delete", "etcd", "watched", "-n", ns, "--timeout=120s")
}

// testAuth checks delegated authorization with real users: no RBAC, view, and admin.
func testAuth(t *testing.T, c *framework.Cluster) {
	const ns = "e2e-auth"
	createNamespace(t, c, ns)
	admin := c.AdminKubectl()
	guarded := "apiVersion: etcdaas.dev/v1beta1\nkind: ETCDInstance\nmetadata:\n  name: guarded\nspec:\n  replicas: 1\n"
	mustRun(t, admin, guarded, "apply", "-n", ns, "-f", "-")
	waitRunning(t, c, ns, "guarded", 2*time.Minute)

	f := &authFixture{
		c:           c,
		ns:          ns,
		backupPath:  "/apis/etcdaas.dev/v1beta1/namespaces/" + ns + "/etcdinstances/guarded/backup",
		restorePath: "/apis/etcdaas.dev/v1beta1/namespaces/" + ns + "/etcdinstances/guarded/restore",
		// Authorization comes before the body is looked at: any file tells 403 from the rest.
		notASnapshot: writeTemp(t, "not-a-snapshot.db", "not a snapshot"),
		backupDir:    t.TempDir(),
	}
	t.Run("NoRBAC", f.noRBAC)
	t.Run("View", f.view)
	t.Run("Edit", f.edit)
	t.Run("AdminBackup", f.adminBackup)
	t.Run("AdminRestore", f.adminRestore)
}

// authFixture is what testAuth's subtests share.
type authFixture struct {
	c                       *framework.Cluster
	ns                      string
	backupPath, restorePath string
	notASnapshot            string // any file, to tell a 403 from the rest
	backupDir               string
	// The admin's backup outlives its subtest: the restore subtest restores it.
	pluginBackup string
}

// checkCannotRestore checks that who may not restore the guarded instance.
func (f *authFixture) checkCannotRestore(t *testing.T, who string, k framework.KubectlClient) {
	t.Helper()
	stderr := mustFail(t, k, "", "create", "--raw", f.restorePath, "-f", f.notASnapshot)
	if !strings.Contains(stderr, "forbidden") && !strings.Contains(stderr, "Forbidden") {
		t.Errorf("%s must not restore: %q", who, stderr)
	}
	if r := k.Run(t.Context(), "", "auth", "can-i", "create", "etcdinstances.etcdaas.dev", "--subresource=restore", "-n", f.ns); strings.TrimSpace(r.Stdout) != "no" {
		t.Errorf("%s can-i create etcdinstances/restore: %s", who, r)
	}
}

// noRBAC checks that a user without RBAC can neither list instances nor back one up.
func (f *authFixture) noRBAC(t *testing.T) {
	c, ns := f.c, f.ns
	nobody := framework.KubectlClient{Path: c.Tools[framework.Kubectl], Kubeconfig: c.UserKubeconfig(t, "e2e-nobody")}
	stderr := mustFail(t, nobody, "", "get", "etcd", "-n", ns)
	if !strings.Contains(stderr, `User "e2e-nobody" cannot list resource "etcdinstances" in API group "etcdaas.dev"`) {
		t.Errorf("expected a 403 naming the user and resource: %q", stderr)
	}
	stderr = mustFail(t, nobody, "", "get", "--raw", f.backupPath)
	if !strings.Contains(stderr, "Forbidden") && !strings.Contains(stderr, "forbidden") {
		t.Errorf("backup without RBAC: %q", stderr)
	}
}

// view checks that the view role reads instances but may neither back up, scale nor restore,
// as kube-apiserver's can-i agrees.
func (f *authFixture) view(t *testing.T) {
	c, ns := f.c, f.ns
	bindClusterRole(t, c, ns, "e2e-viewer", "view")
	viewer := framework.KubectlClient{Path: c.Tools[framework.Kubectl], Kubeconfig: c.UserKubeconfig(t, "e2e-viewer")}
	// The aggregated view role and the delegated authorizer's cache need a moment.
	pollKubectl(t, viewer, 60*time.Second, contains("guarded"), "get", "etcd", "guarded", "-n", ns)
	out := mustRun(t, viewer, "", "get", "etcdinstances.v1alpha1.etcdaas.dev", "guarded", "-n", ns, "-o", "jsonpath={.status.state}")
	if out != "running" {
		t.Errorf("v1alpha1 state as viewer: %q", out)
	}
	stderr := mustFail(t, viewer, "", "get", "--raw", f.backupPath)
	if !strings.Contains(stderr, "forbidden") && !strings.Contains(stderr, "Forbidden") {
		t.Errorf("viewer must not read the backup: %q", stderr)
	}
	stderr = mustFail(t, viewer, "", "scale", "etcdinstance", "guarded", "-n", ns, "--replicas=3")
	if !strings.Contains(stderr, "forbidden") {
		t.Errorf("viewer must not scale: %q", stderr)
	}
	f.checkCannotRestore(t, "viewer", viewer)
	// kube-apiserver's view of the same RBAC agrees (exit status 1 means "no").
	if r := viewer.Run(t.Context(), "", "auth", "can-i", "get", "etcdinstances.etcdaas.dev", "--subresource=backup", "-n", ns); strings.TrimSpace(r.Stdout) != "no" {
		t.Errorf("viewer can-i get etcdinstances/backup: %s", r)
	}
	if r := viewer.Run(t.Context(), "", "auth", "can-i", "list", "etcdinstances.etcdaas.dev", "-n", ns); strings.TrimSpace(r.Stdout) != "yes" {
		t.Errorf("viewer can-i list etcdinstances: %s", r)
	}
}

// edit checks that the edit role may back up but never restore.
func (f *authFixture) edit(t *testing.T) {
	c, ns := f.c, f.ns
	bindClusterRole(t, c, ns, "e2e-editor", "edit")
	editor := framework.KubectlClient{Path: c.Tools[framework.Kubectl], Kubeconfig: c.UserKubeconfig(t, "e2e-editor")}
	pollKubectl(t, editor, 60*time.Second, contains("guarded"), "get", "etcd", "guarded", "-n", ns)
	// edit may back up (the aggregated role settles first) but never restore.
	pollKubectl(t, editor, 60*time.Second, contains("yes"), "auth", "can-i", "get", "etcdinstances.etcdaas.dev", "--subresource=backup", "-n", ns)
	f.checkCannotRestore(t, "editor", editor)
}

// adminBackup backs up as a namespace admin, through the aggregator and through the plugin,
// and keeps the plugin's backup for adminRestore.
func (f *authFixture) adminBackup(t *testing.T) {
	c, ns := f.c, f.ns
	bindClusterRole(t, c, ns, "e2e-ns-admin", "admin")
	nsAdmin := framework.KubectlClient{Path: c.Tools[framework.Kubectl], Kubeconfig: c.UserKubeconfig(t, "e2e-ns-admin")}
	var snapshot string
	err := framework.Poll(t.Context(), time.Second, 60*time.Second, "backup as namespace admin", func(ctx context.Context) (bool, error) {
		r := nsAdmin.Run(ctx, "", "get", "--raw", f.backupPath)
		if r.Err == nil {
			snapshot = r.Stdout
			return true, nil
		}
		if membersUnreachable(r.Stderr) {
			return false, fmt.Errorf("authorized, members not serving yet: %s", r.Stderr)
		}
		return false, fmt.Errorf("%s", r.Stderr) // 403 until RBAC aggregation settles
	})
	if err != nil {
		t.Fatal(err)
	}
	path := writeTemp(t, "guarded.db", snapshot)
	report := snapshotStatus(t, c, path)
	var status struct {
		Hash     uint32 `json:"hash"`
		Revision int64  `json:"revision"`
		TotalKey int    `json:"totalKey"`
		TotalSz  int64  `json:"totalSize"`
	}
	if err := json.Unmarshal([]byte(report), &status); err != nil {
		t.Fatalf("etcdutl report %q: %v", report, err)
	}
	// The stream is the member's database followed by its sha256, which etcdutl checked.
	if status.TotalSz == 0 || int64(len(snapshot)) != status.TotalSz+sha256.Size {
		t.Errorf("snapshot of %d bytes, etcdutl reports a database of %d bytes: %+v", len(snapshot), status.TotalSz, status)
	}
	t.Logf("backup through the aggregator: %d bytes, etcdutl: %s", len(snapshot), strings.TrimSpace(report))
	// The same through the plugin, which verifies the snapshot before keeping it.
	nsAdmin.Env = []string{"PATH=" + c.OurBin + string(os.PathListSeparator) + os.Getenv("PATH")}
	file := filepath.Join(f.backupDir, "plugin.db")
	mustRun(t, nsAdmin, "", "etcdaas", "backup", "guarded", "-n", ns, "-o", file)
	snapshotStatus(t, c, file)
	f.pluginBackup = file
	// A backup of an instance that does not exist is a 404.
	stderr := mustFail(t, nsAdmin, "", "get", "--raw", strings.Replace(f.backupPath, "guarded", "missing", 1))
	if !strings.Contains(stderr, "NotFound") && !strings.Contains(stderr, "not found") {
		t.Errorf("backup of a missing instance: %q", stderr)
	}
}

// adminRestore checks that a namespace admin may restore: a file that is not a snapshot is
// refused by the server, the admin's backup is restored.
func (f *authFixture) adminRestore(t *testing.T) {
	c, ns := f.c, f.ns
	if f.pluginBackup == "" {
		t.Skip("no backup to restore")
	}
	nsAdmin := framework.KubectlClient{Path: c.Tools[framework.Kubectl], Kubeconfig: c.UserKubeconfig(t, "e2e-ns-admin")}
	nsAdmin.Env = []string{"PATH=" + c.OurBin + string(os.PathListSeparator) + os.Getenv("PATH")}
	if r := nsAdmin.Run(t.Context(), "", "auth", "can-i", "create", "etcdinstances.etcdaas.dev", "--subresource=restore", "-n", ns); strings.TrimSpace(r.Stdout) != "yes" {
		t.Errorf("admin can-i create etcdinstances/restore: %s", r)
	}
	// Through the aggregator the body reaches the server's checks: not a snapshot is a 422.
	stderr := mustFail(t, nsAdmin, "", "create", "--raw", f.restorePath, "-f", f.notASnapshot)
	if !strings.Contains(stderr, "is invalid") || !strings.Contains(stderr, "not an etcd snapshot") {
		t.Errorf("admin restore of a file that is not a snapshot: %q", stderr)
	}
	out := mustRun(t, nsAdmin, "", "etcdaas", "restore", "guarded", "-n", ns, "-f", f.pluginBackup, "--timeout=2m")
	if !strings.Contains(out, "etcdinstance.etcdaas.dev/guarded restored: 1/1 members ready") {
		t.Errorf("admin restore through the plugin: %q", out)
	}
}

// membersUnreachable reports whether a backup failed because etcdaas-apiserver found no
// member it can reach (409/503), as opposed to an authorization or other failure.
func membersUnreachable(stderr string) bool {
	return (strings.Contains(stderr, "ServiceUnavailable") || strings.Contains(stderr, "Conflict")) &&
		(strings.Contains(stderr, "cannot reach etcd members") || strings.Contains(stderr, "has no StatefulSet"))
}

// testNamespaceDeletion checks that deleting a namespace removes its ETCDInstances: the
// namespace controller discovers etcdaas.dev through the aggregator and deletes them, and
// the controller's finalizer lets go once the members are stopped.
func testNamespaceDeletion(t *testing.T, c *framework.Cluster) {
	const ns = "e2e-nsdel"
	createNamespace(t, c, ns)
	k := c.AdminKubectl()
	mustRun(t, k, scenarioAlpha+"---\n"+strings.Replace(scenarioBeta, "size: 1Gi", "size: 2Gi", 1), "apply", "-n", ns, "-f", "-")
	inst := waitRunning(t, c, ns, "current", 2*time.Minute)
	// What the namespace controller and the garbage collector send: protobuf first, JSON
	// as the fallback. The answer must be a 200 in one of them, never a 406.
	httpClient, err := rest.HTTPClientFor(c.AdminConfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/apis/etcdaas.dev/v1beta1", "/apis/etcdaas.dev/v1beta1/namespaces/" + ns + "/etcdinstances"} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, c.Server+path, nil)
		req.Header.Set("Accept", "application/vnd.kubernetes.protobuf, */*")
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s asking for protobuf: %s", path, resp.Status)
		}
		t.Logf("GET %s asking for protobuf: %s, %s", path, resp.Status, resp.Header.Get("Content-Type"))
	}
	if !slices.Contains(inst.Finalizers, "etcdaas.dev/members") {
		t.Logf("finalizers of a running instance: %v", inst.Finalizers)
	}
	start := time.Now()
	// kubectl itself gets a minute more than the deletion it waits for, so that a slow
	// deletion fails with kubectl's own timeout message, not a kill at the 2-minute bound.
	deleting := k
	deleting.Timeout = 4 * time.Minute
	mustRun(t, deleting, "", "delete", "namespace", ns, "--timeout=180s")
	t.Logf("namespace with 2 ETCDInstances deleted in %s", time.Since(start).Round(100*time.Millisecond))
	out := mustRun(t, k, "", "get", "etcd", "--all-namespaces", "--field-selector=metadata.namespace="+ns, "-o", "name")
	if strings.TrimSpace(out) != "" {
		t.Errorf("ETCDInstances left in the deleted namespace: %q", out)
	}
	for _, name := range []string{"legacy", "current"} {
		dir := filepath.Join(c.Dir, "controller", "instances", ns, name)
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("the members' data %s is still there", dir)
		}
	}
}

// testDeployDryRun validates every deploy/ manifest against the real API server, ours
// included for the examples.
func testDeployDryRun(t *testing.T, c *framework.Cluster) {
	k := c.AdminKubectl()
	manifests := mustRun(t, k, "", "kustomize", filepath.Join(c.RepoRoot, "deploy", "aggregated"))
	// The same field manager as the harness's apply of the loopback overlay, so the dry run
	// shows the production Service and APIServices replacing the loopback ones.
	out := mustRun(t, k, manifests, "apply", "--server-side", "--field-manager="+framework.FieldManager, "--force-conflicts", "--dry-run=server", "-f", "-")
	t.Logf("deploy/aggregated (server dry run):\n%s", out)
	const ns = "e2e-examples"
	createNamespace(t, c, ns)
	examples := mustRun(t, k, "", "kustomize", filepath.Join(c.RepoRoot, "deploy", "examples"))
	out = mustRun(t, k, examples, "apply", "--dry-run=server", "-n", ns, "-f", "-")
	for _, want := range []string{"etcdinstance.etcdaas.dev/my-etcd created (server dry run)", "etcdinstance.etcdaas.dev/legacy-etcd created (server dry run)"} {
		if !strings.Contains(out, want) {
			t.Errorf("examples dry run lacks %q:\n%s", want, out)
		}
	}
	for _, f := range []string{"etcdinstance-v1beta1.yaml", "etcdinstance-v1alpha1.yaml"} {
		mustRun(t, k, "", "apply", "--dry-run=server", "-n", ns, "-f", filepath.Join(c.RepoRoot, "deploy", "examples", f))
	}
	if out := mustRun(t, k, "", "get", "etcd", "-n", ns, "-o", "name"); strings.TrimSpace(out) != "" {
		t.Errorf("a dry run stored objects: %q", out)
	}
}

// testRestartAPIServer stops etcdaas-apiserver mid-test and starts it again: requests
// fail while it is down, the APIServices recover, and no object is lost.
func testRestartAPIServer(t *testing.T, c *framework.Cluster) {
	const ns = "e2e-restart"
	createNamespace(t, c, ns)
	k := c.AdminKubectl()
	var docs []string
	for i := range 3 {
		docs = append(docs, fmt.Sprintf("apiVersion: etcdaas.dev/v1beta1\nkind: ETCDInstance\nmetadata:\n  name: keep-%d\nspec:\n  replicas: 1\n", i))
	}
	mustRun(t, k, strings.Join(docs, "---\n"), "apply", "-n", ns, "-f", "-")
	before := objectSet(t, k)
	if len(before) < 3 {
		t.Fatalf("expected at least the 3 new objects: %v", before)
	}

	start := time.Now()
	if err := c.StopEtcdaasAPIServer(); err != nil {
		if !errors.Is(err, framework.ErrKilled) || c.APIServerGracefulStop {
			t.Fatal(err)
		}
		t.Logf("known gap, tolerated: %v (etcdaas-apiserver lacks --shutdown-watch-termination-grace-period)", err)
	}
	t.Logf("etcdaas-apiserver stopped in %s", time.Since(start).Round(100*time.Millisecond))
	var down framework.Result
	err := framework.Poll(t.Context(), 500*time.Millisecond, 30*time.Second, "requests to fail while the server is down", func(ctx context.Context) (bool, error) {
		down = k.Run(ctx, "", "get", "etcd", "-n", ns, "--request-timeout=5s")
		return down.Err != nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// What kube-apiserver answers for any aggregated API whose server is gone.
	if !strings.Contains(down.Stderr, "Error from server (ServiceUnavailable)") {
		t.Errorf("while etcdaas-apiserver is down, want the aggregator's 503: %s", down)
	}
	checkAPIServicesUnavailable(t, c)

	start = time.Now()
	if err := c.StartEtcdaasAPIServer(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitForAPIServicesAvailable(t.Context(), 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	pollKubectl(t, k, 60*time.Second, nil, "get", "etcd", "-n", ns)
	t.Logf("served again through the aggregator %s after the restart", time.Since(start).Round(100*time.Millisecond))
	after := objectSet(t, k)
	for key, rv := range before {
		if _, ok := after[key]; !ok {
			t.Errorf("lost across the restart: %s (resourceVersion %s)", key, rv)
		}
	}
	// Writes work again, and the controller still reconciles.
	mustRun(t, k, "", "scale", "etcdinstance", "keep-0", "-n", ns, "--replicas=1")
	waitRunning(t, c, ns, "keep-0", 2*time.Minute)
	mustRun(t, k, "", "delete", "etcd", "--all", "-n", ns, "--timeout=120s")
}

// checkAPIServicesUnavailable waits until both APIServices report Available=False with a
// reason, as kube-apiserver's availability check does for a server that does not answer
// (it looks again every 30 seconds or so; the wait leaves room for a loaded machine).
func checkAPIServicesUnavailable(t *testing.T, c *framework.Cluster) {
	t.Helper()
	for _, name := range framework.APIServiceNames {
		var why string
		err := framework.Poll(t.Context(), 500*time.Millisecond, 2*time.Minute, "APIService "+name+" unavailable", func(ctx context.Context) (bool, error) {
			ok, reason, err := c.APIServiceAvailable(ctx, name)
			why = reason
			return err == nil && !ok, err
		})
		if err != nil {
			t.Errorf("APIService %s stayed Available with its server stopped: %v", name, err)
			continue
		}
		if reason, _, _ := strings.Cut(why, ":"); reason == "" || reason == "<nil>" {
			t.Errorf("APIService %s unavailable without a reason: %q", name, why)
		}
		t.Logf("APIService %s while the server is down: %s", name, why)
	}
}

// objectSet lists every ETCDInstance as namespace/name@uid -> resourceVersion.
func objectSet(t *testing.T, k framework.KubectlClient) map[string]string {
	t.Helper()
	out := mustRun(t, k, "", "get", "etcd", "--all-namespaces", "-o",
		`jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name}@{.metadata.uid} {.metadata.resourceVersion}{"\n"}{end}`)
	set := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			set[f[0]] = f[1]
		}
	}
	return set
}

var forbiddenRE = regexp.MustCompile(`(?i)forbidden`)

// terminatingNamespaceRE is kube-apiserver's NamespaceLifecycle admission refusing to create
// something (an Event of the controller's) in a namespace being deleted, as the namespace
// deletion test does under a running instance: a 403, but not one RBAC decides.
var terminatingNamespaceRE = regexp.MustCompile(`unable to create new content in namespace \S+ because it is being terminated`)

// testNoForbidden checks that etcdaas-apiserver and etcdaas-controller, running with only
// the RBAC of deploy/, were never refused anything by kube-apiserver but creations in a
// namespace being deleted.
func testNoForbidden(t *testing.T, c *framework.Cluster) {
	for _, name := range []string{"etcdaas-apiserver", "etcdaas-controller"} {
		p := c.Process(name)
		data, err := os.ReadFile(p.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		var bad []string
		for _, line := range strings.Split(string(data), "\n") {
			if forbiddenRE.MatchString(line) && !terminatingNamespaceRE.MatchString(line) && !strings.HasPrefix(line, "==== ") {
				bad = append(bad, line)
			}
		}
		if len(bad) > 0 {
			t.Errorf("%s was refused by kube-apiserver (missing RBAC in deploy/?):\n%s", name, strings.Join(bad, "\n"))
		}
	}
}
