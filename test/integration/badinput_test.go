package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1alpha1"
	"github.com/etcdaas/etcdaas/test/testenv"
)

// fuzzSeeds returns the []byte inputs of the checked-in seeds of one fuzz target.
func fuzzSeeds(t *testing.T, target string) map[string][]byte {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "pkg", "apis", "etcdaas", "install", "testdata", "fuzz", target)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	seeds := map[string][]byte{}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		s := bufio.NewScanner(bytes.NewReader(data))
		s.Buffer(nil, 1<<20)
		for s.Scan() {
			line := s.Text()
			if strings.HasPrefix(line, "[]byte(") && strings.HasSuffix(line, ")") {
				body, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(line, "[]byte("), ")"))
				if err != nil {
					t.Fatalf("%s/%s: %v", target, e.Name(), err)
				}
				seeds[e.Name()] = []byte(body)
			}
		}
	}
	if len(seeds) == 0 {
		t.Fatalf("no seeds for %s", target)
	}
	return seeds
}

// TestBodiesGetStatusNever5xx sends the fuzz targets' seeds and malformed bodies to the
// server as creates and updates in both versions and formats: each is accepted or refused
// with a 4xx Status naming the same code, never a 5xx.
func TestBodiesGetStatusNever5xx(t *testing.T) {
	ns := namespace(t)
	malformed := map[string][]byte{
		"empty":       {},
		"null":        []byte("null"),
		"array":       []byte("[]"),
		"truncated":   []byte(`{"metadata":{"name":"x"`),
		"wrong kind":  []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"}}`),
		"other group": []byte(`{"apiVersion":"etcdaas.dev/v9","kind":"ETCDInstance","metadata":{"name":"x"}}`),
		"deep":        []byte(strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000)),
		"bad types":   []byte(`{"metadata":{"name":"x"},"spec":{"replicas":"three","tls":true,"storage":{"size":"lots"}}}`),
		"huge number": []byte(`{"metadata":{"name":"x"},"spec":{"replicas":1e400}}`),
		"bad annotation": []byte(`{"apiVersion":"etcdaas.dev/v1alpha1","kind":"ETCDInstance","metadata":{"name":"x",` +
			`"annotations":{"etcdaas.dev/v1beta1-fields":"{\"spec\":{\"tls\":7}}"}},"spec":{"replicas":1}}`),
	}
	codes := map[int]int{}
	for _, version := range []string{"v1alpha1", "v1beta1"} {
		for _, format := range []string{"JSON", "YAML"} {
			bodies := fuzzSeeds(t, "FuzzDecode"+strings.ToUpper(version[:1])+version[1:]+format)
			for name, body := range malformed {
				bodies[name] = body
			}
			contentType := "application/json"
			if format == "YAML" {
				contentType = "application/yaml"
			}
			for name, body := range bodies {
				for _, req := range []struct{ method, path string }{
					{http.MethodPost, fmt.Sprintf("/apis/etcdaas.dev/%s/namespaces/%s/etcdinstances", version, ns)},
					{http.MethodPut, fmt.Sprintf("/apis/etcdaas.dev/%s/namespaces/%s/etcdinstances/x", version, ns)},
				} {
					res := do(t, req.method, req.path, body, "Content-Type", contentType)
					codes[res.code]++
					what := fmt.Sprintf("%s %s %s %s", req.method, version, format, name)
					if res.code >= 500 {
						t.Errorf("%s: %d %s", what, res.code, res.body)
						continue
					}
					if res.code < 400 {
						continue
					}
					var status metav1.Status
					if err := json.Unmarshal(res.body, &status); err != nil || status.Kind != "Status" || int(status.Code) != res.code {
						t.Errorf("%s: %d without a matching Status: %s", what, res.code, res.body)
					}
				}
			}
		}
	}
	// The valid seeds are created (201); the rest are refused with a Status.
	if codes[http.StatusCreated] == 0 || codes[http.StatusBadRequest] == 0 {
		t.Errorf("answers by code %v: want both creates and 400s", codes)
	}
	t.Logf("answers by code: %v", codes)
}

// TestPatchesWithABadPreservedFieldsAnnotation writes a v1alpha1 object with a preserved-fields
// annotation that is not the JSON the server wrote, through every request kubectl and client-go
// send: server-side apply (kubectl apply --server-side), strategic merge patch (kubectl patch,
// client-side kubectl apply), JSON merge patch, JSON patch and update (kubectl replace), on the
// main resource and on status, and create, also in v1beta1. Each is refused with a 422 naming the annotation
// and only it, and nothing is written. A server-side apply answered 500 before (the apply
// machinery wraps a conversion error), and a strategic merge patch once did too.
func TestPatchesWithABadPreservedFieldsAnnotation(t *testing.T) {
	ctx := testContext(t)
	cs, _ := clients(t)
	ns := namespace(t)
	created, err := cs.EtcdaasV1alpha1().ETCDInstances(ns).Create(ctx, &v1alpha1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "bad-annotation"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	path := fmt.Sprintf("/apis/etcdaas.dev/v1alpha1/namespaces/%s/etcdinstances", ns)
	for _, subresource := range []string{"", "/status"} {
		for _, w := range badAnnotationWrites(t, "bad-annotation", created.ResourceVersion) {
			what := w.method + " " + subresource + " " + w.contentType
			res := do(t, w.method, path+"/bad-annotation"+subresource+w.query, w.body, "Content-Type", w.contentType)
			checkBadAnnotationRefused(t, what, res)
		}
	}
	create := badAnnotationWrites(t, "bad-annotation-created", "")[0]
	checkBadAnnotationRefused(t, "POST", do(t, http.MethodPost, path, create.body, "Content-Type", "application/json"))
	// v1beta1 has no use for the annotation and drops one that reads; one that does not is
	// refused the same way (a mutating webhook's patch of a v1alpha1 write comes back so).
	betaPath := strings.Replace(path, "/v1alpha1/", "/v1beta1/", 1)
	betaCreate := bytes.Replace(create.body, []byte("etcdaas.dev/v1alpha1"), []byte("etcdaas.dev/v1beta1"), 1)
	checkBadAnnotationRefused(t, "POST v1beta1", do(t, http.MethodPost, betaPath, betaCreate, "Content-Type", "application/json"))

	after, err := cs.EtcdaasV1alpha1().ETCDInstances(ns).Get(ctx, "bad-annotation", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after.ResourceVersion != created.ResourceVersion {
		t.Errorf("refused writes wrote the object: resourceVersion %s, was %s", after.ResourceVersion, created.ResourceVersion)
	}
	if _, err := cs.EtcdaasV1alpha1().ETCDInstances(ns).Get(ctx, "bad-annotation-created", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the refused create left an object: %v", err)
	}
}

// badAnnotationWrite is one request writing a bad preserved-fields annotation.
type badAnnotationWrite struct {
	method, contentType, query string
	body                       []byte
}

// badAnnotationWrites are the requests writing {"spec":{"tls":7}} (not the server's JSON: tls
// is an object) into the annotation of the v1alpha1 object name at resourceVersion rv: the
// object itself first (an update, or a create without rv), then the patches.
func badAnnotationWrites(t *testing.T, name, rv string) []badAnnotationWrite {
	t.Helper()
	annotations := map[string]string{"etcdaas.dev/v1beta1-fields": `{"spec":{"tls":7}}`}
	object, err := json.Marshal(map[string]any{
		"apiVersion": "etcdaas.dev/v1alpha1", "kind": "ETCDInstance",
		"metadata": map[string]any{"name": name, "resourceVersion": rv, "annotations": annotations},
		"spec":     map[string]any{"replicas": 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	merge, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": annotations}})
	if err != nil {
		t.Fatal(err)
	}
	jsonPatch, err := json.Marshal([]map[string]any{{"op": "add", "path": "/metadata/annotations", "value": annotations}})
	if err != nil {
		t.Fatal(err)
	}
	return []badAnnotationWrite{
		{method: http.MethodPut, contentType: "application/json", body: object},
		{method: http.MethodPatch, contentType: "application/apply-patch+yaml", query: "?fieldManager=applier", body: object},
		{method: http.MethodPatch, contentType: "application/strategic-merge-patch+json", body: merge},
		{method: http.MethodPatch, contentType: "application/merge-patch+json", body: merge},
		{method: http.MethodPatch, contentType: "application/json-patch+json", body: jsonPatch},
	}
}

// checkBadAnnotationRefused checks that res is a 422 Invalid whose only cause is the
// annotation.
func checkBadAnnotationRefused(t *testing.T, what string, res rawResponse) {
	t.Helper()
	var status metav1.Status
	if err := json.Unmarshal(res.body, &status); err != nil || res.code != http.StatusUnprocessableEntity || status.Reason != metav1.StatusReasonInvalid {
		t.Errorf("%s: %d %s, want 422 Invalid", what, res.code, res.body)
		return
	}
	if status.Details == nil || len(status.Details.Causes) != 1 || status.Details.Causes[0].Field != "metadata.annotations[etcdaas.dev/v1beta1-fields]" {
		t.Errorf("%s: %s, want one cause, the annotation", what, res.body)
	}
}
