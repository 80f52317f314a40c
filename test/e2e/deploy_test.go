package e2e

import (
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/etcdaas/etcdaas/test/e2e/framework"
	"github.com/etcdaas/etcdaas/test/monitoring"
	"github.com/etcdaas/etcdaas/test/testenv"
)

// apiService mirrors the apiregistration.k8s.io/v1 APIService fields deploy/ sets (the
// type lives in k8s.io/kube-aggregator, which this module does not depend on).
type apiService struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Group                 string `json:"group"`
		Version               string `json:"version"`
		GroupPriorityMinimum  int32  `json:"groupPriorityMinimum"`
		VersionPriority       int32  `json:"versionPriority"`
		InsecureSkipTLSVerify bool   `json:"insecureSkipTLSVerify,omitempty"`
		CABundle              string `json:"caBundle"`
		Service               struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
			Port      int32  `json:"port"`
		} `json:"service"`
	} `json:"spec"`
}

// serviceMonitor is the part of a monitoring.coreos.com/v1 ServiceMonitor deploy/ uses.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port        string `json:"port"`
			Path        string `json:"path"`
			Interval    string `json:"interval"`
			HonorLabels bool   `json:"honorLabels"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// rendered is deploy/aggregated built by kustomize, decoded strictly by kind.
type rendered struct {
	objects      map[string]any // kind/namespace/name -> typed object
	apiServices  []apiService
	clusterRoles map[string]rbacv1.ClusterRole
	deployments  map[string]appsv1.Deployment
}

func renderDeploy(t *testing.T, kubectl, dir string) *rendered {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), kubectl, "kustomize", dir).Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v", dir, err)
	}
	r := &rendered{objects: map[string]any{}, clusterRoles: map[string]rbacv1.ClusterRole{}, deployments: map[string]appsv1.Deployment{}}
	for _, doc := range strings.Split(string(out), "\n---\n") {
		var meta struct {
			metav1.TypeMeta   `json:",inline"`
			metav1.ObjectMeta `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("%v in\n%s", err, doc)
		}
		var obj any
		switch meta.Kind {
		case "Namespace":
			obj = &corev1.Namespace{}
		case "ServiceAccount":
			obj = &corev1.ServiceAccount{}
		case "Service":
			obj = &corev1.Service{}
		case "ClusterRole":
			obj = &rbacv1.ClusterRole{}
		case "ClusterRoleBinding":
			obj = &rbacv1.ClusterRoleBinding{}
		case "Role":
			obj = &rbacv1.Role{}
		case "RoleBinding":
			obj = &rbacv1.RoleBinding{}
		case "Deployment":
			obj = &appsv1.Deployment{}
		case "StatefulSet":
			obj = &appsv1.StatefulSet{}
		case "PodDisruptionBudget":
			obj = &policyv1.PodDisruptionBudget{}
		case "NetworkPolicy":
			obj = &networkingv1.NetworkPolicy{}
		case "APIService":
			obj = &apiService{}
		case "ServiceMonitor":
			obj = &serviceMonitor{}
		case "PrometheusRule":
			obj = &monitoring.PrometheusRule{}
		default:
			t.Errorf("unexpected kind %s (%s)", meta.Kind, meta.Name)
			continue
		}
		// Strict: a misspelt field fails here rather than being dropped by the server.
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			t.Errorf("%s %s: %v", meta.Kind, meta.Name, err)
			continue
		}
		r.objects[meta.Kind+"/"+meta.Namespace+"/"+meta.Name] = obj
		switch o := obj.(type) {
		case *apiService:
			r.apiServices = append(r.apiServices, *o)
		case *rbacv1.ClusterRole:
			r.clusterRoles[o.Name] = *o
		case *appsv1.Deployment:
			r.deployments[o.Name] = *o
		}
	}
	return r
}

func (r *rendered) has(t *testing.T, kind, namespace, name string) any {
	t.Helper()
	obj, ok := r.objects[kind+"/"+namespace+"/"+name]
	if !ok {
		t.Errorf("deploy/aggregated lacks %s %s/%s", kind, namespace, name)
	}
	return obj
}

// grants reports whether the rules allow verb on resource in group.
func grants(rules []rbacv1.PolicyRule, group, resource, verb string) bool {
	for _, r := range rules {
		if slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb) {
			return true
		}
	}
	return false
}

// TestDeployManifests checks deploy/ offline: every object decodes strictly, the
// APIServices verify TLS with priorities matching the scheme, the RBAC is what an
// aggregated server needs, and the Deployments use flags our binaries have.
func TestDeployManifests(t *testing.T) {
	tools := framework.RequireTools(t, framework.Kubectl, framework.Etcd)
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	r := renderDeploy(t, tools[framework.Kubectl], filepath.Join(root, "deploy", "aggregated"))

	t.Run("APIServices", func(t *testing.T) { testDeployAPIServices(t, r) })
	t.Run("ServerRBAC", func(t *testing.T) { testDeployServerRBAC(t, r) })
	t.Run("UserRoles", func(t *testing.T) { testDeployUserRoles(t, r) })
	t.Run("ControllerRBAC", func(t *testing.T) { testDeployControllerRBAC(t, r) })
	t.Run("Workloads", func(t *testing.T) { testDeployWorkloads(t, r) })
	t.Run("StorageEtcdTLS", func(t *testing.T) { testDeployStorageEtcdTLS(t, r, tools[framework.Etcd]) })
}

// testDeployAPIServices checks that each version's APIService verifies TLS, points at the
// Service and carries priorities that prefer v1beta1.
func testDeployAPIServices(t *testing.T, r *rendered) {
	const ns = framework.Namespace
	priorities := map[string]int32{}
	for _, a := range r.apiServices {
		if a.Name != a.Spec.Version+"."+a.Spec.Group || a.Spec.Group != framework.Group {
			t.Errorf("APIService %s serves %s/%s", a.Name, a.Spec.Group, a.Spec.Version)
		}
		if a.Spec.InsecureSkipTLSVerify {
			t.Errorf("APIService %s skips TLS verification", a.Name)
		}
		if ca, err := base64.StdEncoding.DecodeString(a.Spec.CABundle); err != nil || len(ca) == 0 {
			t.Errorf("APIService %s caBundle is not base64 data: %v", a.Name, err)
		}
		if a.Spec.Service.Name != framework.ServiceName || a.Spec.Service.Namespace != ns {
			t.Errorf("APIService %s points at %s/%s", a.Name, a.Spec.Service.Namespace, a.Spec.Service.Name)
		}
		if a.Spec.GroupPriorityMinimum != r.apiServices[0].Spec.GroupPriorityMinimum {
			t.Errorf("groupPriorityMinimum differs between the versions")
		}
		priorities[a.Spec.Version] = a.Spec.VersionPriority
	}
	if len(priorities) != 2 || priorities["v1beta1"] <= priorities["v1alpha1"] {
		t.Errorf("want one APIService per version with v1beta1 preferred: %v", priorities)
	}
	svc, _ := r.has(t, "Service", ns, framework.ServiceName).(*corev1.Service)
	if svc != nil && (len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != r.apiServices[0].Spec.Service.Port) {
		t.Errorf("Service ports %v do not match the APIService port", svc.Spec.Ports)
	}
}

// testDeployServerRBAC checks that etcdaas-apiserver may delegate authentication and
// authorization, list what admission needs and find members for backups, and nothing more.
func testDeployServerRBAC(t *testing.T, r *rendered) {
	const ns = framework.Namespace
	sa := rbacv1.Subject{Kind: "ServiceAccount", Name: framework.APIServerSA, Namespace: ns}
	r.has(t, "ServiceAccount", ns, framework.APIServerSA)
	if crb, _ := r.has(t, "ClusterRoleBinding", "", "etcdaas-apiserver:system:auth-delegator").(*rbacv1.ClusterRoleBinding); crb != nil {
		if crb.RoleRef.Name != "system:auth-delegator" || !slices.Contains(crb.Subjects, sa) {
			t.Errorf("auth-delegator binding: %+v", crb)
		}
	}
	if rb, _ := r.has(t, "RoleBinding", "kube-system", "etcdaas-apiserver:extension-apiserver-authentication-reader").(*rbacv1.RoleBinding); rb != nil {
		if rb.RoleRef.Kind != "Role" || rb.RoleRef.Name != "extension-apiserver-authentication-reader" || !slices.Contains(rb.Subjects, sa) {
			t.Errorf("authentication-reader binding: %+v", rb)
		}
	}
	role := r.clusterRoles["etcdaas-apiserver"]
	for _, want := range []struct{ group, resource string }{
		{"", "namespaces"},
		{"", "resourcequotas"},
		{"admissionregistration.k8s.io", "validatingwebhookconfigurations"},
		{"admissionregistration.k8s.io", "mutatingwebhookconfigurations"},
		{"admissionregistration.k8s.io", "validatingadmissionpolicies"},
		{"admissionregistration.k8s.io", "validatingadmissionpolicybindings"},
		{"admissionregistration.k8s.io", "mutatingadmissionpolicies"},
		{"admissionregistration.k8s.io", "mutatingadmissionpolicybindings"},
		{"flowcontrol.apiserver.k8s.io", "flowschemas"},
		{"flowcontrol.apiserver.k8s.io", "prioritylevelconfigurations"},
	} {
		for _, verb := range []string{"list", "watch"} {
			if !grants(role.Rules, want.group, want.resource, verb) {
				t.Errorf("etcdaas-apiserver cannot %s %s.%s", verb, want.resource, want.group)
			}
		}
	}
	// The ResourceQuota admission plugin adds what it admits to the quota's status.used,
	// and only that: the resourcequota controller of kube-controller-manager writes the rest.
	if !grants(role.Rules, "", "resourcequotas/status", "update") || grants(role.Rules, "", "resourcequotas", "update") {
		t.Errorf("etcdaas-apiserver must update resourcequotas/status and not resourcequotas: %+v", role.Rules)
	}
	backup := r.clusterRoles["etcdaas-apiserver:backup"]
	if !grants(backup.Rules, "apps", "statefulsets", "get") || !grants(backup.Rules, "", "secrets", "get") {
		t.Errorf("etcdaas-apiserver cannot find members for backups: %+v", backup.Rules)
	}
	// A restore on the kubernetes backend is recorded on the instance's StatefulSet.
	if !grants(backup.Rules, "apps", "statefulsets", "update") {
		t.Errorf("etcdaas-apiserver cannot record restores on StatefulSets: %+v", backup.Rules)
	}
	for _, rule := range append(role.Rules, backup.Rules...) {
		if slices.Contains(rule.Verbs, "*") || slices.Contains(rule.Resources, "*") {
			t.Errorf("etcdaas-apiserver is granted a wildcard: %+v", rule)
		}
		if slices.Contains(rule.Resources, "secrets") && !slices.Equal(rule.Verbs, []string{"get"}) {
			t.Errorf("etcdaas-apiserver may do more than get Secrets: %+v", rule)
		}
	}
}

// testDeployUserRoles checks what the aggregated view, edit and admin roles grant on
// etcdinstances and their subresources.
func testDeployUserRoles(t *testing.T, r *rendered) {
	byLabel := map[string][]rbacv1.PolicyRule{}
	for _, cr := range r.clusterRoles {
		for _, role := range []string{"view", "edit", "admin"} {
			if cr.Labels["rbac.authorization.k8s.io/aggregate-to-"+role] == "true" {
				byLabel[role] = append(byLabel[role], cr.Rules...)
			}
		}
	}
	for _, role := range []string{"view", "edit", "admin"} {
		if !grants(byLabel[role], framework.Group, "etcdinstances", "get") || !grants(byLabel[role], framework.Group, "etcdinstances", "list") {
			t.Errorf("%s cannot read etcdinstances", role)
		}
	}
	if grants(byLabel["view"], framework.Group, "etcdinstances/backup", "get") {
		t.Error("view grants etcdinstances/backup: reading an instance must not grant its data")
	}
	// Replacing an instance's data is admin only.
	for _, role := range []string{"view", "edit"} {
		if grants(byLabel[role], framework.Group, "etcdinstances/restore", "create") {
			t.Errorf("%s grants etcdinstances/restore", role)
		}
	}
	if !grants(byLabel["admin"], framework.Group, "etcdinstances/restore", "create") {
		t.Error("admin cannot restore")
	}
	for _, role := range []string{"edit", "admin"} {
		if !grants(byLabel[role], framework.Group, "etcdinstances/backup", "get") {
			t.Errorf("%s cannot take backups", role)
		}
		if !grants(byLabel[role], framework.Group, "etcdinstances/scale", "update") || !grants(byLabel[role], framework.Group, "etcdinstances", "create") {
			t.Errorf("%s cannot create and scale", role)
		}
	}
	// Defragmenting changes no data: edit and admin may ask for it, view may not.
	for _, role := range []string{"edit", "admin"} {
		if !grants(byLabel[role], framework.Group, "etcdinstances/defrag", "create") {
			t.Errorf("%s cannot request a defragmentation", role)
		}
	}
	if grants(byLabel["view"], framework.Group, "etcdinstances/defrag", "create") {
		t.Error("view may request a defragmentation")
	}
	// Recovering from quorum loss discards the members that did not survive: admin only.
	if !grants(byLabel["admin"], framework.Group, "etcdinstances/recover", "create") {
		t.Error("admin cannot recover an instance that lost quorum")
	}
	for _, role := range []string{"view", "edit"} {
		if grants(byLabel[role], framework.Group, "etcdinstances/recover", "create") {
			t.Errorf("%s may recover an instance that lost quorum: that is for admin only", role)
		}
	}
}

// testDeployControllerRBAC checks that etcdaas-controller may manage the objects of an
// instance and hold its leader-election Lease.
func testDeployControllerRBAC(t *testing.T, r *rendered) {
	const ns = framework.Namespace
	role := r.clusterRoles["etcdaas-controller"]
	for _, want := range []struct{ group, resource, verb string }{
		{framework.Group, "etcdinstances", "watch"},
		{framework.Group, "etcdinstances", "update"},
		{framework.Group, "etcdinstances/status", "update"},
		{framework.Group, "etcdinstances/finalizers", "update"},
		{"apps", "statefulsets", "create"},
		{"", "services", "create"},
		{"", "secrets", "create"},
		{"policy", "poddisruptionbudgets", "create"},
		{"", "events", "create"},
		// Why a member's pod cannot be created is in the StatefulSet's FailedCreate Events.
		{"", "events", "list"},
		// A restore restarts member 0 through its seed init container.
		{"", "pods", "delete"},
	} {
		if !grants(role.Rules, want.group, want.resource, want.verb) {
			t.Errorf("etcdaas-controller cannot %s %s.%s", want.verb, want.resource, want.group)
		}
	}
	if le, _ := r.has(t, "Role", ns, "etcdaas-controller:leader-election").(*rbacv1.Role); le != nil && !grants(le.Rules, "coordination.k8s.io", "leases", "update") {
		t.Error("the controller cannot hold its leader-election Lease")
	}
	checkControllerObjectVerbs(t, role.Rules)
}

// controllerObjectVerbs are all the controller does with an instance's StatefulSet,
// Services, PodDisruptionBudget and Secrets (NAME-tls, NAME-client-tls, NAME-ca, and the S3
// credentials its spec.backup names): each by name (a Service is never changed once made).
// It has no informer for them and never lists, watches or patches them; list and watch
// cluster-wide would hand whoever holds its token every Secret of the cluster, and every
// workload's pod template, at once.
// The instances themselves are watched and written with update (finalizer, request
// annotations, status), never patched.
var controllerObjectVerbs = []struct {
	group, resource string
	verbs           []string
}{
	{framework.Group, "etcdinstances", []string{"get", "list", "watch", "update"}},
	{framework.Group, "etcdinstances/status", []string{"update"}},
	{"apps", "statefulsets", []string{"get", "create", "update", "delete"}},
	{"", "services", []string{"get", "create", "delete"}},
	{"policy", "poddisruptionbudgets", []string{"get", "create", "update", "delete"}},
	{"", "secrets", []string{"get", "create", "update", "delete"}},
}

// checkControllerObjectVerbs checks that the controller's rules grant exactly the verbs of
// controllerObjectVerbs on each of its resources.
func checkControllerObjectVerbs(t *testing.T, rules []rbacv1.PolicyRule) {
	t.Helper()
	for _, o := range controllerObjectVerbs {
		for _, verb := range o.verbs {
			if !grants(rules, o.group, o.resource, verb) {
				t.Errorf("etcdaas-controller cannot %s %s.%s", verb, o.resource, o.group)
			}
		}
		for _, rule := range rules {
			if !slices.Contains(rule.APIGroups, o.group) || !(slices.Contains(rule.Resources, o.resource) || slices.Contains(rule.Resources, "*")) {
				continue
			}
			for _, verb := range rule.Verbs {
				if !slices.Contains(o.verbs, verb) {
					t.Errorf("etcdaas-controller may %s %s.%s, which it never does: %+v", verb, o.resource, o.group, rule)
				}
			}
		}
	}
}

// testDeployWorkloads checks the two Deployments: replicas, service accounts, probes, ports
// and flags our binaries have.
func testDeployWorkloads(t *testing.T, r *rendered) {
	const ns = framework.Namespace
	bin := framework.BuildCommands(t)
	server, ok := r.deployments["etcdaas-apiserver"]
	if !ok {
		t.Fatal("no etcdaas-apiserver Deployment")
	}
	if server.Spec.Replicas == nil || *server.Spec.Replicas < 2 {
		t.Errorf("etcdaas-apiserver runs %v replicas, want at least 2", server.Spec.Replicas)
	}
	pod := server.Spec.Template.Spec
	if pod.ServiceAccountName != framework.APIServerSA {
		t.Errorf("etcdaas-apiserver runs as %q", pod.ServiceAccountName)
	}
	if pod.Affinity == nil || pod.Affinity.PodAntiAffinity == nil {
		t.Error("etcdaas-apiserver replicas have no anti-affinity")
	}
	ctr := pod.Containers[0]
	for _, probe := range []struct {
		name string
		p    *corev1.Probe
		path string
	}{{"liveness", ctr.LivenessProbe, "/livez"}, {"readiness", ctr.ReadinessProbe, "/readyz"}} {
		if probe.p == nil || probe.p.HTTPGet == nil || probe.p.HTTPGet.Scheme != corev1.URISchemeHTTPS || probe.p.HTTPGet.Path != probe.path {
			t.Errorf("%s probe: want HTTPS %s, got %+v", probe.name, probe.path, probe.p)
		}
	}
	if svc, ok := r.objects["Service/"+ns+"/"+framework.ServiceName].(*corev1.Service); ok {
		target := svc.Spec.Ports[0].TargetPort.String()
		if !slices.ContainsFunc(ctr.Ports, func(p corev1.ContainerPort) bool { return p.Name == target || fmt.Sprint(p.ContainerPort) == target }) {
			t.Errorf("Service targets %q, which the container does not expose: %v", target, ctr.Ports)
		}
	}
	checkFlags(t, filepath.Join(bin, framework.APIServerCommand), ctr.Command[1:])
	etcd, _ := r.has(t, "StatefulSet", ns, "etcdaas-etcd").(*appsv1.StatefulSet)
	if etcd != nil {
		for i := range *etcd.Spec.Replicas {
			member := fmt.Sprintf("etcdaas-etcd-%d.etcdaas-etcd.%s.svc:2379", i, ns)
			if !slices.ContainsFunc(ctr.Command, func(arg string) bool {
				return strings.HasPrefix(arg, "--etcd-servers=") && strings.Contains(arg, member)
			}) {
				t.Errorf("--etcd-servers does not list %s", member)
			}
		}
	}

	controller, ok := r.deployments["etcdaas-controller"]
	if !ok {
		t.Fatal("no etcdaas-controller Deployment")
	}
	cpod := controller.Spec.Template.Spec
	if cpod.ServiceAccountName != framework.ControllerSA {
		t.Errorf("etcdaas-controller runs as %q", cpod.ServiceAccountName)
	}
	if !slices.Contains(cpod.Containers[0].Command, "--leader-elect=true") {
		t.Errorf("etcdaas-controller without leader election: %v", cpod.Containers[0].Command)
	}
	checkFlags(t, filepath.Join(bin, framework.ControllerCommand), cpod.Containers[0].Command[1:])
}

// checkFlags fails when bin --help does not know one of args' flags.
func checkFlags(t *testing.T, bin string, args []string) {
	t.Helper()
	help, err := exec.CommandContext(t.Context(), bin, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --help: %v\n%s", bin, err, help)
	}
	for _, arg := range args {
		name, _, _ := strings.Cut(arg, "=")
		if !strings.HasPrefix(name, "--") {
			continue
		}
		known := regexp.MustCompile(`(?m)(^|[\s,])` + regexp.QuoteMeta(name) + `([\s=\[]|$)`)
		if !known.Match(help) {
			t.Errorf("%s has no flag %s (used in deploy/)", filepath.Base(bin), name)
		}
	}
}

// TestMonitoringComponent builds deploy/aggregated with the optional monitoring component, as
// an overlay of a user would, and checks that the ServiceMonitor reaches the controller's
// metrics port. (It is not applied: the monitoring CRDs are not in the test cluster.)
func TestMonitoringComponent(t *testing.T) {
	tools := framework.RequireTools(t, framework.Kubectl)
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	overlay := t.TempDir()
	rel, err := filepath.Rel(overlay, root) // kustomize takes only relative paths
	if err != nil {
		t.Fatal(err)
	}
	kustomization := fmt.Sprintf("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- %s\ncomponents:\n- %s\n",
		filepath.Join(rel, "deploy", "aggregated"), filepath.Join(rel, "deploy", "components", "monitoring"))
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(kustomization), 0o644); err != nil {
		t.Fatal(err)
	}
	r := renderDeploy(t, tools[framework.Kubectl], overlay)
	ns := framework.Namespace
	sm, ok := r.objects["ServiceMonitor/"+ns+"/etcdaas-controller"].(*serviceMonitor)
	if !ok {
		t.Fatal("no ServiceMonitor etcdaas-controller")
	}
	svc, ok := r.objects["Service/"+ns+"/etcdaas-controller-metrics"].(*corev1.Service)
	if !ok {
		t.Fatal("no Service etcdaas-controller-metrics")
	}
	selector, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
	if err != nil || !selector.Matches(labels.Set(svc.Labels)) || len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "metrics" || sm.Spec.Endpoints[0].Path != "/metrics" {
		t.Fatalf("ServiceMonitor %+v does not select Service %s's metrics port (%v)", sm.Spec, svc.Name, err)
	}
	// The series name their instance's namespace in the label namespace, which Prometheus
	// would otherwise rename exported_namespace to make room for the target's (the
	// controller's namespace): etcdaas_instance_ready_members{namespace="prod"} would find
	// nothing.
	if !sm.Spec.Endpoints[0].HonorLabels {
		t.Fatal("the ServiceMonitor does not honor the metrics' own labels: namespace would be the controller's, the instance's exported_namespace")
	}
	controller := r.deployments["etcdaas-controller"]
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(controller.Spec.Template.Labels)) {
		t.Fatalf("Service selector %v does not select the controller pods %v", svc.Spec.Selector, controller.Spec.Template.Labels)
	}
	c := controller.Spec.Template.Spec.Containers[0]
	port := 0
	for _, p := range c.Ports {
		if p.Name == svc.Spec.Ports[0].TargetPort.StrVal {
			port = int(p.ContainerPort)
		}
	}
	if port == 0 || !slices.Contains(c.Command, fmt.Sprintf("--metrics-bind-address=:%d", port)) {
		t.Fatalf("the controller does not serve metrics on its %q port: ports %v, command %v", svc.Spec.Ports[0].TargetPort.StrVal, c.Ports, c.Command)
	}
	// The alerts come with the scrape (TestPrometheusRules tests them).
	if pr, ok := r.objects["PrometheusRule/"+ns+"/etcdaas"].(*monitoring.PrometheusRule); !ok || len(pr.Spec.Groups) == 0 {
		t.Fatal("the monitoring component has no PrometheusRule etcdaas with alerts")
	}
	// Without the component, deploy/aggregated has no ServiceMonitor nor PrometheusRule (their
	// CRDs may be absent).
	for key := range renderDeploy(t, tools[framework.Kubectl], filepath.Join(root, "deploy", "aggregated")).objects {
		if strings.HasPrefix(key, "ServiceMonitor/") || strings.HasPrefix(key, "PrometheusRule/") {
			t.Fatalf("deploy/aggregated includes %s", key)
		}
	}
}
