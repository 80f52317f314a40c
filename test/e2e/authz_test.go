package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/pki"
	"github.com/etcdaas/etcdaas/test/e2e/framework"
)

const matrixNamespace = "e2e-matrix"

// matrixInstance is the instance every request of the matrix is about.
const matrixInstance = "matrix"

var etcdinstancesGVR = schema.GroupVersionResource{Group: framework.Group, Version: "v1beta1", Resource: "etcdinstances"}

// matrixFixture is what the matrix needs: a running instance, the users bound to their
// roles, their certificates and the request bodies.
type matrixFixture struct {
	c      *framework.Cluster
	certs  map[string]*pki.KeyPair
	bodies map[string][]byte
}

// testAuthorizationMatrix sends every request of matrixRequests as every identity of
// matrixIdentities, through kube-apiserver and directly to etcdaas-apiserver, and checks
// each answer against the declaration: the exact status, a Status body for 401 and 403, and
// for 403 the user the server took the caller for. The instance is unchanged afterwards.
func testAuthorizationMatrix(t *testing.T, c *framework.Cluster) {
	checkEverySubresourceDeclared(t, c)
	f := newMatrixFixture(t, c)
	bases := []struct {
		name string
		base *rest.Config
	}{
		{"aggregator", &rest.Config{Host: c.Server, TLSClientConfig: rest.TLSClientConfig{CAData: c.PKI.ClusterCA.CertPEM}}},
		{"direct", &rest.Config{Host: "https://" + framework.HostPort(c.EtcdaasPort), TLSClientConfig: rest.TLSClientConfig{CAData: c.PKI.ServingCA.CertPEM}}},
	}
	for _, b := range bases {
		t.Run(b.name, func(t *testing.T) {
			counts := map[int]int{}
			for _, id := range matrixIdentities {
				client, err := rest.HTTPClientFor(f.config(b.base, id))
				if err != nil {
					t.Fatal(err)
				}
				client.Timeout = time.Minute
				for _, r := range matrixRequests {
					code := f.check(t, client, b.base.Host, r, id)
					counts[code]++
				}
			}
			t.Logf("%d requests (%s): %s", len(matrixIdentities)*len(matrixRequests), b.name, formatCounts(counts))
		})
	}
	f.checkUnchanged(t)
}

// checkEverySubresourceDeclared fails when discovery lists a subresource of etcdinstances, in
// either version, that the matrix has no request for: a new subresource must be declared.
func checkEverySubresourceDeclared(t *testing.T, c *framework.Cluster) {
	t.Helper()
	for _, version := range []string{"v1beta1", "v1alpha1"} {
		list, err := c.Kube.Discovery().ServerResourcesForGroupVersion(framework.Group + "/" + version)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range list.APIResources {
			sub, ok := strings.CutPrefix(r.Name, "etcdinstances/")
			if !ok {
				continue
			}
			declared := slices.ContainsFunc(matrixRequests, func(m matrixRequest) bool { return m.Subresource == sub })
			if !declared {
				t.Errorf("%s serves %s, which the authorization matrix does not declare", version, r.Name)
			}
		}
	}
}

func newMatrixFixture(t *testing.T, c *framework.Cluster) *matrixFixture {
	t.Helper()
	createNamespace(t, c, matrixNamespace)
	admin := c.AdminKubectl()
	mustRun(t, admin, "apiVersion: etcdaas.dev/v1beta1\nkind: ETCDInstance\nmetadata:\n  name: "+matrixInstance+"\nspec:\n  replicas: 1\n",
		"apply", "-n", matrixNamespace, "-f", "-")
	f := &matrixFixture{c: c, certs: map[string]*pki.KeyPair{}}
	for user, groups := range map[string][]string{
		matrixNobody: nil, matrixViewer: nil, matrixEditor: nil, matrixAdmin: nil, matrixMaster: {"system:masters"},
		matrixImpersonat: nil, matrixImpostor: nil, matrixSpoofer: nil,
	} {
		kp, err := c.PKI.ClusterCA.Issue(pki.Request{CommonName: user, Organization: groups, Usage: pki.ClientUsage})
		if err != nil {
			t.Fatal(err)
		}
		f.certs[user] = kp
	}
	// A front-proxy-client certificate from a CA nobody trusts.
	unknownCA, err := pki.NewCA("e2e-matrix-unknown-ca")
	if err != nil {
		t.Fatal(err)
	}
	if f.certs[credUnknownCACert], err = unknownCA.Issue(pki.Request{CommonName: framework.FrontProxyClientName, Usage: pki.ClientUsage}); err != nil {
		t.Fatal(err)
	}
	// A certificate of the front-proxy CA for a name kube-apiserver does not proxy as.
	if f.certs[credFrontProxyOtherName], err = c.PKI.FrontProxyCA.Issue(pki.Request{CommonName: "not-the-front-proxy", Usage: pki.ClientUsage}); err != nil {
		t.Fatal(err)
	}
	bindClusterRole(t, c, matrixNamespace, matrixViewer, "view")
	bindClusterRole(t, c, matrixNamespace, matrixEditor, "edit")
	bindClusterRole(t, c, matrixNamespace, matrixAdmin, "admin")
	allowImpersonation(t, c, matrixImpersonat, matrixAdmin)
	waitRunning(t, c, matrixNamespace, matrixInstance, 2*time.Minute)
	f.waitForRBAC(t)
	f.bodies = f.requestBodies(t)
	return f
}

// allowImpersonation lets user impersonate the user target, and nobody else.
func allowImpersonation(t *testing.T, c *framework.Cluster, user, target string) {
	t.Helper()
	name := "e2e-matrix-impersonate-" + target
	_, err := c.Kube.RbacV1().ClusterRoles().Create(t.Context(), &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"users"}, Verbs: []string{"impersonate"}, ResourceNames: []string{target}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Kube.RbacV1().ClusterRoleBindings().Create(t.Context(), &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// waitForRBAC waits until kube-apiserver authorizes each bound user for the strongest grant
// of its role (the aggregated view, edit and admin roles settle after deploy/ is applied), so
// that no request of the matrix meets a role still being aggregated.
func (f *matrixFixture) waitForRBAC(t *testing.T) {
	t.Helper()
	checks := []authorizationv1.SubjectAccessReviewSpec{
		{User: matrixViewer, ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: matrixNamespace, Verb: "get", Group: framework.Group, Resource: "etcdinstances", Subresource: "scale"}},
		{User: matrixEditor, ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: matrixNamespace, Verb: "get", Group: framework.Group, Resource: "etcdinstances", Subresource: "backups"}},
		{User: matrixAdmin, ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: matrixNamespace, Verb: "create", Group: framework.Group, Resource: "etcdinstances", Subresource: "recover"}},
		{User: matrixImpersonat, ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "impersonate", Resource: "users", Name: matrixAdmin}},
	}
	for _, spec := range checks {
		err := framework.Poll(t.Context(), 500*time.Millisecond, time.Minute, spec.User+" authorized", func(ctx context.Context) (bool, error) {
			sar, err := f.c.Kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: spec}, metav1.CreateOptions{})
			if err != nil {
				return false, err
			}
			if !sar.Status.Allowed {
				return false, fmt.Errorf("not yet: %s", sar.Status.Reason)
			}
			return true, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// requestBodies returns the bodies of the matrix's writes.
func (f *matrixFixture) requestBodies(t *testing.T) map[string][]byte {
	t.Helper()
	obj, err := f.c.Dynamic.Resource(etcdinstancesGVR).Namespace(matrixNamespace).Get(t.Context(), matrixInstance, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Without a resourceVersion the updates are unconditional: the controller's status
	// writes in the meantime cannot turn them into 409s.
	unstructured.RemoveNestedField(obj.Object, "metadata", "resourceVersion")
	unstructured.RemoveNestedField(obj.Object, "metadata", "managedFields")
	object, err := json.Marshal(obj.Object)
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{
		bodyNewObject: []byte(`{"apiVersion":"etcdaas.dev/v1beta1","kind":"ETCDInstance","metadata":{"name":"matrix-new"},"spec":{"replicas":1}}`),
		bodyObject:    object,
		bodyScale:     []byte(`{"apiVersion":"autoscaling/v1","kind":"Scale","metadata":{"name":"` + matrixInstance + `","namespace":"` + matrixNamespace + `"},"spec":{"replicas":1}}`),
		bodyLabels:    []byte(`{"metadata":{"labels":{"e2e-matrix":"patched"}}}`),
		bodyReplicas:  []byte(`{"spec":{"replicas":1}}`),
		bodyNotASnap:  []byte("not a snapshot"),
	}
}

// config returns the client configuration of the identity against base (a URL and the CA
// of its serving certificate).
func (f *matrixFixture) config(base *rest.Config, id matrixIdentity) *rest.Config {
	cfg := rest.CopyConfig(base)
	switch id.Credential {
	case credBadToken:
		cfg.BearerToken = "not-a-token-anyone-issued"
	case credClientCert:
		cfg.CertData, cfg.KeyData = f.certs[id.ClientCert].CertPEM, f.certs[id.ClientCert].KeyPEM
	case credUnknownCACert, credFrontProxyOtherName:
		cfg.CertData, cfg.KeyData = f.certs[id.Credential].CertPEM, f.certs[id.Credential].KeyPEM
	}
	cfg.Impersonate.UserName, cfg.Impersonate.Groups = id.Impersonate, id.ImpersonateGroups
	if id.SpoofHeaders {
		cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return spoofingTransport{next: rt} }
	}
	return cfg
}

// spoofingTransport adds the front proxy's identity headers, claiming to be the matrix's
// admin in system:masters.
type spoofingTransport struct{ next http.RoundTripper }

func (s spoofingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("X-Remote-User", matrixAdmin)
	req.Header.Set("X-Remote-Group", "system:masters")
	return s.next.RoundTrip(req)
}

// check sends the request as the identity and compares the answer with the declaration;
// it returns the status received.
func (f *matrixFixture) check(t *testing.T, client *http.Client, host string, r matrixRequest, id matrixIdentity) int {
	t.Helper()
	path := "/apis/etcdaas.dev/v1beta1/namespaces/" + matrixNamespace + "/etcdinstances"
	if r.Object {
		path += "/" + matrixInstance + r.Suffix
	}
	if r.Query != "" {
		path += "?" + r.Query
	}
	req, err := http.NewRequestWithContext(t.Context(), r.Method, host+path, bytes.NewReader(f.bodies[r.Body]))
	if err != nil {
		t.Fatal(err)
	}
	if r.ContentType != "" {
		req.Header.Set("Content-Type", r.ContentType)
	}
	req.Header.Set("Accept", "application/json, */*")
	resp, err := client.Do(req)
	if err != nil {
		t.Errorf("%s as %q: %v", r.Name, id.Name, err)
		return 0
	}
	defer resp.Body.Close()
	want := expected(r, id)
	if resp.StatusCode != want {
		// Watches and backups stream; the first bytes tell what went wrong.
		head, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		t.Errorf("%s %s as %q: %s, want %d: %s", r.Method, path, id.Name, resp.Status, want, head)
		return resp.StatusCode
	}
	if want == http.StatusUnauthorized || want == http.StatusForbidden {
		checkRefusal(t, resp, r, id)
	}
	return resp.StatusCode
}

// checkRefusal checks a 401 or 403 is a Status with that code, and that a 403 names the
// user the server took the caller for: never the one the spoofed headers claim.
func checkRefusal(t *testing.T, resp *http.Response, r matrixRequest, id matrixIdentity) {
	t.Helper()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var status metav1.Status
	if err := json.Unmarshal(body, &status); err != nil || status.Kind != "Status" || int(status.Code) != resp.StatusCode {
		t.Errorf("%s as %q: %s with a body that is not its Status: %s", r.Name, id.Name, resp.Status, body)
		return
	}
	if resp.StatusCode == http.StatusForbidden && !strings.Contains(status.Message, fmt.Sprintf("User %q", id.ForbiddenAs)) {
		t.Errorf("%s as %q: 403 must name user %q: %s", r.Name, id.Name, id.ForbiddenAs, status.Message)
	}
}

// checkUnchanged checks that the matrix's dry runs and refused requests changed nothing.
func (f *matrixFixture) checkUnchanged(t *testing.T) {
	t.Helper()
	client := f.c.Dynamic.Resource(etcdinstancesGVR).Namespace(matrixNamespace)
	if _, err := client.Get(t.Context(), "matrix-new", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the dry-run create stored matrix-new: %v", err)
	}
	obj, err := client.Get(t.Context(), matrixInstance, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the instance is gone after the matrix (dry-run deletes): %v", err)
	}
	if obj.GetDeletionTimestamp() != nil || obj.GetLabels()["e2e-matrix"] != "" {
		t.Errorf("the matrix changed the instance: deletionTimestamp %v, labels %v", obj.GetDeletionTimestamp(), obj.GetLabels())
	}
	if phase, _, _ := unstructured.NestedString(obj.Object, "status", "phase"); phase != "Running" {
		t.Errorf("phase %q after the matrix, want Running (no restore or recovery started)", phase)
	}
	if member, ok := obj.GetAnnotations()[etcdaas.RecoverRequestedAnnotation]; ok {
		t.Errorf("the matrix left a recovery request (member %q)", member)
	}
}

func formatCounts(counts map[int]int) string {
	codes := make([]int, 0, len(counts))
	for code := range counts {
		codes = append(codes, code)
	}
	sort.Ints(codes)
	parts := make([]string, 0, len(codes))
	for _, code := range codes {
		parts = append(parts, fmt.Sprintf("%d × %d", counts[code], code))
	}
	return strings.Join(parts, ", ")
}
