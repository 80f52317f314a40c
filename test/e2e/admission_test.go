package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/pki"
	"github.com/etcdaas/etcdaas/test/e2e/framework"
)

// admissionVersions are the served versions every admission case runs in.
var admissionVersions = []string{"v1beta1", "v1alpha1"}

// instanceGVR is the etcdinstances resource in version.
func instanceGVR(version string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: framework.Group, Version: version, Resource: "etcdinstances"}
}

// newInstance is an ETCDInstance in version with replicas members and labels.
func newInstance(version, name string, replicas int64, labels map[string]string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": framework.Group + "/" + version,
		"kind":       "ETCDInstance",
		"metadata":   map[string]any{"name": name},
		"spec":       map[string]any{"replicas": replicas},
	}}
	u.SetLabels(labels)
	return u
}

// createAdmissionNamespace creates ns and deletes it, with what is left in it, when the test ends.
func createAdmissionNamespace(t *testing.T, c *framework.Cluster, ns string) {
	t.Helper()
	createNamespace(t, c, ns)
	t.Cleanup(func() {
		if err := c.Kube.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}); err != nil {
			t.Errorf("deleting namespace %s: %v", ns, err)
		}
	})
}

// namespaceOnly selects the namespace ns by the label every namespace has.
func namespaceOnly(ns string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: ns}}
}

// statusOf returns the Status of an API error, failing the test when err is not one.
func statusOf(t *testing.T, what string, err error) metav1.Status {
	t.Helper()
	var s apierrors.APIStatus
	if !errors.As(err, &s) {
		t.Fatalf("%s: got %v, want a refusal with a Status", what, err)
	}
	return s.Status()
}

// pollRefused retries try until it returns an error whose message contains want (a policy or a
// webhook configuration reaches an API server through an informer, a moment after it is
// created), bounded in time.
func pollRefused(t *testing.T, what, want string, try func(ctx context.Context) error) {
	t.Helper()
	err := framework.Poll(t.Context(), 200*time.Millisecond, 30*time.Second, what, func(ctx context.Context) (bool, error) {
		err := try(ctx)
		if err == nil {
			return false, errors.New("accepted")
		}
		if !strings.Contains(err.Error(), want) {
			return false, err
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// dryRun is the option of a server-side dry run: admission runs, nothing is stored.
var dryRun = []string{metav1.DryRunAll}

// mergePatch sends a JSON merge patch.
func mergePatch(ctx context.Context, c *framework.Cluster, gvr schema.GroupVersionResource, ns, name, patch string, subresource ...string) error {
	_, err := c.Dynamic.Resource(gvr).Namespace(ns).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}, subresource...)
	return err
}

// sameRefusal fails unless ours (etcdaas-apiserver's answer for etcdinstances) is the refusal
// kube-apiserver gave for a built-in resource (theirs): the same code and reason, the same
// message once the resource is named, and the message contains want.
func sameRefusal(t *testing.T, what string, ours, theirs error, theirResource, want string) {
	t.Helper()
	o, th := statusOf(t, what+" (etcdaas-apiserver)", ours), statusOf(t, what+" (kube-apiserver, "+theirResource+")", theirs)
	expected := strings.Replace(th.Message, theirResource, "etcdinstances.etcdaas.dev", 1)
	if o.Code != th.Code || o.Reason != th.Reason || o.Message != expected {
		t.Errorf("%s: etcdaas-apiserver answered %d %s %q; kube-apiserver answers %d %s %q for %s", what, o.Code, o.Reason, o.Message, th.Code, th.Reason, th.Message, theirResource)
	}
	if !strings.Contains(o.Message, want) {
		t.Errorf("%s: message %q lacks %q", what, o.Message, want)
	}
}

// testAdmissionPolicy checks that a ValidatingAdmissionPolicy of the cluster applies to
// etcdinstances as kube-apiserver applies it to a built-in type: creations, patches and the
// scale subresource that break it are refused in both versions with the code and message
// kube-apiserver gives for a Deployment under the same policy, and compliant ones are accepted.
func testAdmissionPolicy(t *testing.T, c *framework.Cluster) {
	const ns, name = "e2e-admission-policy", "e2e-odd-replicas"
	const message = "spec.replicas must be odd"
	createAdmissionNamespace(t, c, ns)
	createOddReplicasPolicy(t, c, ns, name, message)
	deployments := c.Kube.AppsV1().Deployments(ns)

	// In force in both servers once a probe is refused.
	pollRefused(t, "the policy in force in etcdaas-apiserver", message, func(ctx context.Context) error {
		_, err := c.Dynamic.Resource(instanceGVR("v1beta1")).Namespace(ns).Create(ctx, newInstance("v1beta1", "probe", 2, nil), metav1.CreateOptions{DryRun: dryRun})
		return err
	})
	pollRefused(t, "the policy in force in kube-apiserver", message, func(ctx context.Context) error {
		_, err := deployments.Create(ctx, newDeployment("probe", 2), metav1.CreateOptions{DryRun: dryRun})
		return err
	})

	for _, version := range admissionVersions {
		t.Run(version, func(t *testing.T) { checkOddReplicasPolicy(t, c, ns, name, message, version) })
	}
}

// checkOddReplicasPolicy checks the policy name in version: a creation, a patch and a patch of
// the scale subresource to an even number of replicas are refused as kube-apiserver refuses
// them for a Deployment, kubectl scale and patch show the policy's message, compliant changes
// pass, and nothing refused is stored.
func checkOddReplicasPolicy(t *testing.T, c *framework.Cluster, ns, name, message, version string) {
	deployments := c.Kube.AppsV1().Deployments(ns)
	deploymentsGVR := appsv1.SchemeGroupVersion.WithResource("deployments")
	k := c.AdminKubectl()
	gvr := instanceGVR(version)
	instances := c.Dynamic.Resource(gvr).Namespace(ns)
	even, odd := "even-"+version, "odd-"+version
	_, ours := instances.Create(t.Context(), newInstance(version, even, 2, nil), metav1.CreateOptions{})
	_, theirs := deployments.Create(t.Context(), newDeployment(even, 2), metav1.CreateOptions{})
	sameRefusal(t, "create with 2 replicas", ours, theirs, "deployments.apps", message)
	if _, err := instances.Get(t.Context(), even, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a refused instance is stored: %v", err)
	}

	if _, err := instances.Create(t.Context(), newInstance(version, odd, 1, nil), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create with 1 replica: %v", err)
	}
	if _, err := deployments.Create(t.Context(), newDeployment(odd, 1), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ours = mergePatch(t.Context(), c, gvr, ns, odd, `{"spec":{"replicas":4}}`)
	theirs = mergePatch(t.Context(), c, deploymentsGVR, ns, odd, `{"spec":{"replicas":4}}`)
	sameRefusal(t, "patch to 4 replicas", ours, theirs, "deployments.apps", message)
	ours = mergePatch(t.Context(), c, gvr, ns, odd, `{"spec":{"replicas":2}}`, "scale")
	theirs = mergePatch(t.Context(), c, deploymentsGVR, ns, odd, `{"spec":{"replicas":2}}`, "scale")
	sameRefusal(t, "patch of the scale subresource to 2 replicas", ours, theirs, "deployments.apps", message)

	// As a user sees it: kubectl scale and kubectl patch, refused with the policy's message.
	resource := "etcdinstances." + version + "." + framework.Group + "/" + odd
	for _, args := range [][]string{
		{"scale", resource, "--replicas=2"},
		{"patch", resource, "--type=merge", "-p", `{"spec":{"replicas":6}}`},
	} {
		stderr := mustFail(t, k, "", append(args, "-n", ns)...)
		if !strings.Contains(stderr, "ValidatingAdmissionPolicy '"+name+"' with binding '"+name+"' denied request: "+message) {
			t.Errorf("kubectl %s: %q lacks the policy's refusal", strings.Join(args, " "), stderr)
		}
	}
	// Compliant changes pass (dry run: no members to start).
	mustRun(t, k, "", "scale", resource, "--replicas=3", "--dry-run=server", "-n", ns)
	mustRun(t, k, "", "patch", resource, "--type=merge", "-p", `{"spec":{"replicas":5}}`, "--dry-run=server", "-n", ns)
	got, err := instances.Get(t.Context(), odd, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r, _, _ := unstructured.NestedInt64(got.Object, "spec", "replicas"); r != 1 {
		t.Errorf("replicas after refused and dry-run updates: %d, want 1", r)
	}
}

// createOddReplicasPolicy creates a ValidatingAdmissionPolicy that wants an odd spec.replicas
// of etcdinstances (registered for v1beta1, matchPolicy Equivalent) and deployments, and of
// their scale subresources, and its binding, limited to ns; both are deleted when the test
// ends.
func createOddReplicasPolicy(t *testing.T, c *framework.Cluster, ns, name, message string) {
	t.Helper()
	createValidatingPolicy(t, c, ns, name, admissionregistrationv1.ValidatingAdmissionPolicySpec{
		FailurePolicy: ptr.To(admissionregistrationv1.Fail),
		MatchConstraints: &admissionregistrationv1.MatchResources{
			// etcdinstances in v1beta1 only: requests in v1alpha1 match as equivalent.
			ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{
				createOrUpdate(framework.Group, "v1beta1", "etcdinstances", "etcdinstances/scale"),
				createOrUpdate(appsv1.GroupName, "v1", "deployments", "deployments/scale"),
			},
		},
		Validations: []admissionregistrationv1.Validation{{Expression: "object.spec.replicas % 2 == 1", Message: message}},
	})
}

// createValidatingPolicy creates the ValidatingAdmissionPolicy name with spec, and its binding
// (deny) limited to ns; both are deleted when the test ends.
func createValidatingPolicy(t *testing.T, c *framework.Cluster, ns, name string, spec admissionregistrationv1.ValidatingAdmissionPolicySpec) {
	t.Helper()
	policies := c.Kube.AdmissionregistrationV1().ValidatingAdmissionPolicies()
	bindings := c.Kube.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings()
	_, err := policies.Create(t.Context(), &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       spec,
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = bindings.Create(t.Context(), &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        name,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
			MatchResources:    &admissionregistrationv1.MatchResources{NamespaceSelector: namespaceOnly(ns)},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		if err := bindings.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("deleting the policy binding: %v", err)
		}
		if err := policies.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("deleting the policy: %v", err)
		}
	})
}

// createOrUpdate is a policy rule for creations and updates of resources in group/version.
func createOrUpdate(group, version string, resources ...string) admissionregistrationv1.NamedRuleWithOperations {
	return admissionregistrationv1.NamedRuleWithOperations{RuleWithOperations: admissionregistrationv1.RuleWithOperations{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
		Rule:       admissionregistrationv1.Rule{APIGroups: []string{group}, APIVersions: []string{version}, Resources: resources},
	}}
}

// newDeployment is a Deployment with replicas pods (nothing runs them in the test cluster: it
// is the built-in type the policy's answers are compared with).
func newDeployment(name string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example.invalid/none"}}},
			},
		},
	}
}

// Labels of the webhook test: the mutating webhooks add mutatedLabel+version, the validating
// webhook refuses objects with refuseLabel.
const (
	mutatedLabel = "e2e.etcdaas.dev/mutated-"
	refuseLabel  = "e2e.etcdaas.dev/refuse"
	refusal      = "objects labelled " + refuseLabel + " are refused by the e2e webhook"
	validateName = "validate.e2e.etcdaas.dev"
)

// webhookCall is what a webhook was asked.
type webhookCall struct {
	Path string
	Name string
	// Operation is the request's operation: the test's creations, or the controller's
	// update that adds its finalizer to an instance it has just seen.
	Operation   admissionv1.Operation
	Kind        metav1.GroupVersionKind
	RequestKind metav1.GroupVersionKind
	// ObjectAPIVersion is the apiVersion of the object the webhook was sent.
	ObjectAPIVersion string
	// Labels are the labels of the object the webhook was sent.
	Labels map[string]string
}

// webhookServer serves the e2e webhooks over TLS on 127.0.0.1 and records their calls.
type webhookServer struct {
	URL    string
	CA     []byte
	mu     sync.Mutex
	calls  []webhookCall
	server *httptest.Server
}

// startWebhookServer starts the webhooks with a serving certificate for 127.0.0.1 from a CA
// of their own; they stop when the test ends.
func startWebhookServer(t *testing.T) *webhookServer {
	t.Helper()
	ca, err := pki.NewCA("e2e-webhook-ca")
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.Issue(pki.Request{CommonName: "e2e-webhook", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Usage: pki.ServerUsage})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	w := &webhookServer{CA: ca.CertPEM}
	w.server = httptest.NewUnstartedServer(http.HandlerFunc(w.serve))
	w.server.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	w.server.StartTLS()
	w.URL = w.server.URL
	t.Cleanup(w.server.Close)
	return w
}

// serve answers one AdmissionReview: /mutate/VERSION adds mutatedLabel+VERSION, /validate
// refuses objects labelled refuseLabel.
func (w *webhookServer) serve(rw http.ResponseWriter, r *http.Request) {
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
		http.Error(rw, fmt.Sprintf("not an AdmissionReview: %v", err), http.StatusBadRequest)
		return
	}
	req := review.Request
	var obj unstructured.Unstructured
	if err := obj.UnmarshalJSON(req.Object.Raw); err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	call := webhookCall{Path: r.URL.Path, Name: req.Name, Operation: req.Operation, Kind: req.Kind, ObjectAPIVersion: obj.GetAPIVersion(), Labels: obj.GetLabels()}
	if req.RequestKind != nil {
		call.RequestKind = *req.RequestKind
	}
	w.mu.Lock()
	w.calls = append(w.calls, call)
	w.mu.Unlock()

	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	switch version, mutate := strings.CutPrefix(r.URL.Path, "/mutate/"); {
	case mutate:
		resp.Patch = addLabelPatch(obj.GetLabels(), mutatedLabel+version, "true")
		resp.PatchType = ptr.To(admissionv1.PatchTypeJSONPatch)
	case obj.GetLabels()[refuseLabel] != "":
		resp.Allowed = false
		resp.Result = &metav1.Status{Message: refusal}
	}
	review.Response, review.Request = resp, nil
	rw.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(rw).Encode(&review)
}

// addLabelPatch is the JSON patch that adds the label key=value to an object with labels.
func addLabelPatch(labels map[string]string, key, value string) []byte {
	op := map[string]any{"op": "add", "path": "/metadata/labels", "value": map[string]string{key: value}}
	if labels != nil {
		op["path"], op["value"] = "/metadata/labels/"+strings.ReplaceAll(key, "/", "~1"), value
	}
	patch, _ := json.Marshal([]any{op})
	return patch
}

// creationsOf returns the recorded calls about the creation of the ETCDInstance name, in
// order: not those about the controller's update of it (its finalizer), which may come at any
// moment once it is created.
func (w *webhookServer) creationsOf(name string) []webhookCall {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []webhookCall
	for _, c := range w.calls {
		if c.Name == name && c.Kind.Group == framework.Group && c.Operation == admissionv1.Create {
			out = append(out, c)
		}
	}
	return out
}

// webhook is an admission webhook of the e2e server at path, for resources of group in
// versions, in ns only.
func (w *webhookServer) webhook(path, ns, group string, versions, resources []string) (admissionregistrationv1.WebhookClientConfig, []admissionregistrationv1.RuleWithOperations, *metav1.LabelSelector) {
	url := w.URL + path
	return admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: w.CA},
		[]admissionregistrationv1.RuleWithOperations{{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
			Rule:       admissionregistrationv1.Rule{APIGroups: []string{group}, APIVersions: versions, Resources: resources},
		}},
		namespaceOnly(ns)
}

// registerWebhooks creates a MutatingWebhookConfiguration with one webhook per served
// version (each registered for its version only, matchPolicy Equivalent) and a
// ValidatingWebhookConfiguration for etcdinstances in v1beta1 and for configmaps, all limited
// to ns; they are deleted when the test ends.
func registerWebhooks(t *testing.T, c *framework.Cluster, w *webhookServer, ns string) {
	t.Helper()
	mutating := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "e2e-etcdaas-mutate"}}
	for _, version := range admissionVersions {
		cc, rules, sel := w.webhook("/mutate/"+version, ns, framework.Group, []string{version}, []string{"etcdinstances"})
		mutating.Webhooks = append(mutating.Webhooks, admissionregistrationv1.MutatingWebhook{
			Name: version + ".mutate.e2e.etcdaas.dev", ClientConfig: cc, Rules: rules, NamespaceSelector: sel,
			MatchPolicy: ptr.To(admissionregistrationv1.Equivalent), FailurePolicy: ptr.To(admissionregistrationv1.Fail),
			SideEffects: ptr.To(admissionregistrationv1.SideEffectClassNone), AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds: ptr.To(int32(10)),
		})
	}
	validating := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "e2e-etcdaas-validate"}}
	cc, rules, sel := w.webhook("/validate", ns, framework.Group, []string{"v1beta1"}, []string{"etcdinstances"})
	_, coreRules, _ := w.webhook("/validate", ns, "", []string{"v1"}, []string{"configmaps"})
	validating.Webhooks = []admissionregistrationv1.ValidatingWebhook{{
		Name: validateName, ClientConfig: cc, Rules: append(rules, coreRules...), NamespaceSelector: sel,
		MatchPolicy: ptr.To(admissionregistrationv1.Equivalent), FailurePolicy: ptr.To(admissionregistrationv1.Fail),
		SideEffects: ptr.To(admissionregistrationv1.SideEffectClassNone), AdmissionReviewVersions: []string{"v1"},
		TimeoutSeconds: ptr.To(int32(10)),
	}}
	api := c.Kube.AdmissionregistrationV1()
	if _, err := api.MutatingWebhookConfigurations().Create(t.Context(), mutating, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := api.MutatingWebhookConfigurations().Delete(context.Background(), mutating.Name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("deleting the mutating webhooks: %v", err)
		}
	})
	if _, err := api.ValidatingWebhookConfigurations().Create(t.Context(), validating, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := api.ValidatingWebhookConfigurations().Delete(context.Background(), validating.Name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("deleting the validating webhook: %v", err)
		}
	})
}

// testAdmissionWebhooks checks that the cluster's admission webhooks apply to etcdinstances:
// a validating webhook's refusal reaches the user as kube-apiserver passes it on for a
// ConfigMap, and mutating webhooks registered for one version each are called for requests
// in either version with the object converted to their version, their patches kept in the
// stored object (fields v1alpha1 cannot express included).
func testAdmissionWebhooks(t *testing.T, c *framework.Cluster) {
	const ns = "e2e-admission-webhooks"
	createAdmissionNamespace(t, c, ns)
	w := startWebhookServer(t)
	registerWebhooks(t, c, w, ns)
	pollRefused(t, "the validating webhook in force in etcdaas-apiserver", refusal, func(ctx context.Context) error {
		probe := newInstance("v1beta1", "probe", 1, map[string]string{refuseLabel: "yes"})
		_, err := c.Dynamic.Resource(instanceGVR("v1beta1")).Namespace(ns).Create(ctx, probe, metav1.CreateOptions{DryRun: dryRun})
		return err
	})
	pollRefused(t, "the validating webhook in force in kube-apiserver", refusal, func(ctx context.Context) error {
		_, err := c.Kube.CoreV1().ConfigMaps(ns).Create(ctx, newRefusedConfigMap("probe"), metav1.CreateOptions{DryRun: dryRun})
		return err
	})
	waitMutatingWebhooks(t, c, ns)

	for _, version := range admissionVersions {
		t.Run(version, func(t *testing.T) {
			checkValidatingWebhook(t, c, w, ns, version)
			checkMutated(t, c, w, ns, version)
			checkRefusedUpdate(t, c, ns, "mutated-"+version, version)
		})
	}
}

// newRefusedConfigMap is a ConfigMap the validating webhook refuses.
func newRefusedConfigMap(name string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{refuseLabel: "yes"}}}
}

// checkValidatingWebhook checks that a creation in version the validating webhook refuses is
// refused as kube-apiserver refuses a ConfigMap, after both mutating webhooks and the
// validating one were each called in their own version, and that kubectl shows the refusal.
func checkValidatingWebhook(t *testing.T, c *framework.Cluster, w *webhookServer, ns, version string) {
	t.Helper()
	name := "refused-" + version
	_, ours := c.Dynamic.Resource(instanceGVR(version)).Namespace(ns).Create(t.Context(), newInstance(version, name, 1, map[string]string{refuseLabel: "yes"}), metav1.CreateOptions{})
	_, theirs := c.Kube.CoreV1().ConfigMaps(ns).Create(t.Context(), newRefusedConfigMap(name), metav1.CreateOptions{})
	sameRefusal(t, "create labelled "+refuseLabel, ours, theirs, "configmaps", `admission webhook "`+validateName+`" denied the request: `+refusal)
	// The webhooks registered for the other version saw the request converted.
	checkCalls(t, w.creationsOf(name), version, map[string]string{"/mutate/v1beta1": "v1beta1", "/mutate/v1alpha1": "v1alpha1", "/validate": "v1beta1"})
	manifest := fmt.Sprintf("apiVersion: etcdaas.dev/%s\nkind: ETCDInstance\nmetadata:\n  name: %s-kubectl\n  labels:\n    %s: \"yes\"\n", version, name, refuseLabel)
	stderr := mustFail(t, c.AdminKubectl(), manifest, "create", "-n", ns, "-f", "-")
	if !strings.Contains(stderr, `admission webhook "`+validateName+`" denied the request: `+refusal) {
		t.Errorf("kubectl create: %q lacks the webhook's refusal", stderr)
	}
}

// checkRefusedUpdate checks that a patch in version the validating webhook refuses (it sees
// the patched object in v1beta1) is refused with 400 and its message, the stored object
// unchanged.
func checkRefusedUpdate(t *testing.T, c *framework.Cluster, ns, name, version string) {
	t.Helper()
	err := mergePatch(t.Context(), c, instanceGVR(version), ns, name, `{"metadata":{"labels":{"`+refuseLabel+`":"yes"}}}`)
	if s := statusOf(t, "patch labelled "+refuseLabel, err); s.Code != http.StatusBadRequest || !strings.Contains(s.Message, refusal) {
		t.Errorf("patch labelled %s: %d %q, want 400 with the webhook's refusal", refuseLabel, s.Code, s.Message)
	}
	got, err := c.Dynamic.Resource(instanceGVR(version)).Namespace(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if l := got.GetLabels(); l[refuseLabel] != "" || l[mutatedLabel+"v1beta1"] != "true" {
		t.Errorf("labels after a refused patch: %v", l)
	}
}

// waitMutatingWebhooks waits until both mutating webhooks label a dry-run creation in ns.
func waitMutatingWebhooks(t *testing.T, c *framework.Cluster, ns string) {
	t.Helper()
	err := framework.Poll(t.Context(), 200*time.Millisecond, 30*time.Second, "the mutating webhooks in force in etcdaas-apiserver", func(ctx context.Context) (bool, error) {
		got, err := c.Dynamic.Resource(instanceGVR("v1beta1")).Namespace(ns).Create(ctx, newInstance("v1beta1", "probe", 1, nil), metav1.CreateOptions{DryRun: dryRun})
		if err != nil {
			return false, err
		}
		for _, version := range admissionVersions {
			if got.GetLabels()[mutatedLabel+version] != "true" {
				return false, fmt.Errorf("labels %v lack %s", got.GetLabels(), mutatedLabel+version)
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// checkMutated creates an instance in version (with, in v1beta1, a field v1alpha1 cannot
// express) and checks that each mutating webhook was called in its own version and that the
// stored object, read in both versions, has both webhooks' labels and the field.
func checkMutated(t *testing.T, c *framework.Cluster, w *webhookServer, ns, version string) {
	t.Helper()
	name := "mutated-" + version
	obj := newInstance(version, name, 1, map[string]string{"app": "e2e"})
	if version == "v1beta1" {
		_ = unstructured.SetNestedField(obj.Object, int64(30), "spec", "defragmentation", "freePercent")
	}
	if _, err := c.Dynamic.Resource(instanceGVR(version)).Namespace(ns).Create(t.Context(), obj, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create %s: %v", version, err)
	}
	calls := w.creationsOf(name)
	checkCalls(t, calls, version, map[string]string{"/mutate/v1beta1": "v1beta1", "/mutate/v1alpha1": "v1alpha1", "/validate": "v1beta1"})
	for _, call := range calls {
		if call.Path == "/validate" && (call.Labels[mutatedLabel+"v1beta1"] == "" || call.Labels[mutatedLabel+"v1alpha1"] == "") {
			t.Errorf("the validating webhook saw labels %v, without both mutations", call.Labels)
		}
	}
	for _, read := range admissionVersions {
		got, err := c.Dynamic.Resource(instanceGVR(read)).Namespace(ns).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		labels := got.GetLabels()
		if labels["app"] != "e2e" || labels[mutatedLabel+"v1beta1"] != "true" || labels[mutatedLabel+"v1alpha1"] != "true" {
			t.Errorf("created in %s, read in %s: labels %v, want app=e2e and both webhooks' labels", version, read, labels)
		}
		if read != "v1beta1" || version != "v1beta1" {
			continue
		}
		if p, _, _ := unstructured.NestedInt64(got.Object, "spec", "defragmentation", "freePercent"); p != 30 {
			t.Errorf("spec.defragmentation.freePercent after the v1alpha1 webhook's patch: %d, want 30", p)
		}
	}
}

// checkCalls checks that the webhooks at the paths of want (path → version the webhook is
// registered for) were each called once, with the object in that version, and told that
// the request was in version.
func checkCalls(t *testing.T, calls []webhookCall, version string, want map[string]string) {
	t.Helper()
	seen := map[string]int{}
	for _, call := range calls {
		seen[call.Path]++
		v, ok := want[call.Path]
		if !ok {
			t.Errorf("unexpected call of %s: %+v", call.Path, call)
			continue
		}
		if call.Kind.Version != v || call.ObjectAPIVersion != framework.Group+"/"+v {
			t.Errorf("%s was sent kind %v, an object %s; want %s", call.Path, call.Kind, call.ObjectAPIVersion, v)
		}
		if call.RequestKind.Version != version || call.RequestKind.Group != framework.Group || call.RequestKind.Kind != "ETCDInstance" {
			t.Errorf("%s was told the request's kind was %v, want %s/%s ETCDInstance", call.Path, call.RequestKind, framework.Group, version)
		}
	}
	for path := range want {
		if seen[path] != 1 {
			t.Errorf("%s called %d times for a %s request, want once: %+v", path, seen[path], version, calls)
		}
	}
}

// policyLabel is the label the e2e MutatingAdmissionPolicy sets: the version of the object
// it was given.
const policyLabel = "e2e.etcdaas.dev/policy-saw"

// testMutatingAdmissionPolicy checks that a MutatingAdmissionPolicy of the cluster (GA in
// Kubernetes 1.36) applies to etcdinstances: registered for v1beta1, it mutates requests in
// either version, given the object in v1beta1, and its change is stored.
func testMutatingAdmissionPolicy(t *testing.T, c *framework.Cluster) {
	const ns, name = "e2e-admission-mutating-policy", "e2e-label-version"
	createAdmissionNamespace(t, c, ns)
	createLabelPolicy(t, c, ns, name)
	err := framework.Poll(t.Context(), 200*time.Millisecond, 30*time.Second, "the mutating policy in force in etcdaas-apiserver", func(ctx context.Context) (bool, error) {
		got, err := c.Dynamic.Resource(instanceGVR("v1alpha1")).Namespace(ns).Create(ctx, newInstance("v1alpha1", "probe", 1, nil), metav1.CreateOptions{DryRun: dryRun})
		if err != nil {
			return false, err
		}
		if got.GetLabels()[policyLabel] == "" {
			return false, fmt.Errorf("labels %v lack %s", got.GetLabels(), policyLabel)
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, version := range admissionVersions {
		t.Run(version, func(t *testing.T) {
			obj := newInstance(version, "mutated-"+version, 1, nil)
			if version == "v1beta1" {
				_ = unstructured.SetNestedField(obj.Object, int64(30), "spec", "defragmentation", "freePercent")
			}
			if _, err := c.Dynamic.Resource(instanceGVR(version)).Namespace(ns).Create(t.Context(), obj, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			for _, read := range admissionVersions {
				got, err := c.Dynamic.Resource(instanceGVR(read)).Namespace(ns).Get(t.Context(), obj.GetName(), metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if l := got.GetLabels()[policyLabel]; l != "v1beta1" {
					t.Errorf("created in %s, read in %s: label %s=%q, want v1beta1 (the policy's version)", version, read, policyLabel, l)
				}
				if p, _, _ := unstructured.NestedInt64(got.Object, "spec", "defragmentation", "freePercent"); read == "v1beta1" && version == "v1beta1" && p != 30 {
					t.Errorf("spec.defragmentation.freePercent after the policy's mutation: %d, want 30", p)
				}
			}
		})
	}
}

// createLabelPolicy creates a MutatingAdmissionPolicy for etcdinstances in v1beta1 that sets
// policyLabel to the version of the object it is given, and its binding limited to ns; both
// are deleted when the test ends.
func createLabelPolicy(t *testing.T, c *framework.Cluster, ns, name string) {
	t.Helper()
	api := c.Kube.AdmissionregistrationV1()
	_, err := api.MutatingAdmissionPolicies().Create(t.Context(), &admissionregistrationv1.MutatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.MutatingAdmissionPolicySpec{
			FailurePolicy:      ptr.To(admissionregistrationv1.Fail),
			ReinvocationPolicy: admissionregistrationv1.NeverReinvocationPolicy,
			MatchConstraints: &admissionregistrationv1.MatchResources{
				MatchPolicy: ptr.To(admissionregistrationv1.Equivalent),
				ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
					RuleWithOperations: admissionregistrationv1.RuleWithOperations{
						Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
						Rule:       admissionregistrationv1.Rule{APIGroups: []string{framework.Group}, APIVersions: []string{"v1beta1"}, Resources: []string{"etcdinstances"}},
					},
				}},
			},
			Mutations: []admissionregistrationv1.Mutation{{
				PatchType: admissionregistrationv1.PatchTypeApplyConfiguration,
				ApplyConfiguration: &admissionregistrationv1.ApplyConfiguration{Expression: `Object{metadata: Object.metadata{labels: {"` + policyLabel +
					`": object.apiVersion == "etcdaas.dev/v1beta1" ? "v1beta1" : "other"}}}`},
			}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = api.MutatingAdmissionPolicyBindings().Create(t.Context(), &admissionregistrationv1.MutatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.MutatingAdmissionPolicyBindingSpec{
			PolicyName:     name,
			MatchResources: &admissionregistrationv1.MatchResources{NamespaceSelector: namespaceOnly(ns)},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		if err := api.MutatingAdmissionPolicyBindings().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("deleting the mutating policy binding: %v", err)
		}
		if err := api.MutatingAdmissionPolicies().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("deleting the mutating policy: %v", err)
		}
	})
}

// testConnectPolicy checks that a ValidatingAdmissionPolicy on the CONNECT operation of the
// action subresources (defrag, recover, restore) applies to them as kube-apiserver applies it
// to services/proxy: in a namespace whose actions the policy freezes, each answers its
// refusal with the same code and message, and nothing is recorded.
func testConnectPolicy(t *testing.T, c *framework.Cluster) {
	const ns, name = "e2e-admission-connect", "e2e-frozen-actions"
	const message = "actions are frozen in this namespace"
	createAdmissionNamespace(t, c, ns)
	createFrozenActionsPolicy(t, c, ns, name, message)
	if _, err := c.Dynamic.Resource(instanceGVR("v1beta1")).Namespace(ns).Create(t.Context(), newInstance("v1beta1", "db", 1, nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := c.Kube.CoreV1().Services(ns).Create(t.Context(), &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rc := etcdaasClient(t, c).EtcdaasV1beta1().RESTClient()
	postTo := func(ctx context.Context, name, sub string) error {
		return rc.Post().Namespace(ns).Resource("etcdinstances").Name(name).SubResource(sub).
			SetHeader("Content-Type", "application/octet-stream").Body([]byte("not a snapshot")).Do(ctx).Error()
	}
	post := func(ctx context.Context, sub string) error { return postTo(ctx, "db", sub) }
	proxy := func(ctx context.Context) error {
		return c.Kube.CoreV1().RESTClient().Post().Namespace(ns).Resource("services").Name("db").SubResource("proxy").Do(ctx).Error()
	}
	// The probe names an instance that does not exist (404 until the policy is in force,
	// which admission decides first): a probe of db before then would be accepted once its
	// member serves, and record the defragmentation this test checks is never recorded.
	pollRefused(t, "the policy in force in etcdaas-apiserver", message, func(ctx context.Context) error { return postTo(ctx, "absent", "defrag") })
	pollRefused(t, "the policy in force in kube-apiserver", message, proxy)
	theirs := proxy(t.Context())
	for _, sub := range []string{"defrag", "recover", "restore"} {
		sameRefusal(t, "POST "+sub, post(t.Context(), sub), theirs, "services", message)
	}
	got, err := c.Dynamic.Resource(instanceGVR("v1beta1")).Namespace(ns).Get(t.Context(), "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{etcdaas.DefragRequestedAnnotation, etcdaas.RecoverRequestedAnnotation} {
		if v, ok := got.GetAnnotations()[key]; ok {
			t.Errorf("a refused action was recorded: %s=%q", key, v)
		}
	}
}

// createFrozenActionsPolicy creates a ValidatingAdmissionPolicy refusing CONNECT requests to
// etcdinstances' action subresources and to services/proxy, and its binding limited to ns;
// both are deleted when the test ends.
func createFrozenActionsPolicy(t *testing.T, c *framework.Cluster, ns, name, message string) {
	t.Helper()
	connect := func(group, version string, resources ...string) admissionregistrationv1.NamedRuleWithOperations {
		r := createOrUpdate(group, version, resources...)
		r.Operations = []admissionregistrationv1.OperationType{admissionregistrationv1.Connect}
		return r
	}
	createValidatingPolicy(t, c, ns, name, admissionregistrationv1.ValidatingAdmissionPolicySpec{
		FailurePolicy: ptr.To(admissionregistrationv1.Fail),
		MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{
			connect(framework.Group, "v1beta1", "etcdinstances/defrag", "etcdinstances/recover", "etcdinstances/restore"),
			connect("", "v1", "services/proxy"),
		}},
		Validations: []admissionregistrationv1.Validation{{Expression: "request.userInfo.username == 'nobody'", Message: message}},
	})
}
