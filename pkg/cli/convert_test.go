package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1alpha1"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
)

const betaManifest = `# instances
---
apiVersion: etcdaas.dev/v1beta1
kind: ETCDInstance
metadata:
  name: my-etcd
  namespace: default
  labels: {team: storage}
spec:
  replicas: 5
  version: "3.6"
  tls: {enabled: true}
  storage: {size: 2Gi, storageClassName: fast}
status:
  observedGeneration: 2
  phase: Running
  replicas: 5
  readyReplicas: 5
  selector: app.kubernetes.io/instance=my-etcd
  members:
  - {name: my-etcd-0, id: 8e9e05c52164694d, leader: true, ready: true}
  conditions:
  - type: Available
    status: "True"
    reason: AllMembersReady
    message: all 5 members healthy
    lastTransitionTime: "2026-11-25T10:00:00Z"
---
apiVersion: etcdaas.dev/v1beta1
kind: ETCDInstance
metadata: {name: small}
spec: {replicas: 1}
`

const alphaManifest = `apiVersion: etcdaas.dev/v1alpha1
kind: ETCDInstance
metadata: {name: old, namespace: legacy}
spec: {replicas: 3, with_tls_bundle: true}
status: {state: running, message: deployment successful}
`

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// splitYAML returns the documents of a multi-document YAML output.
func splitYAML(t *testing.T, out string) []string {
	t.Helper()
	docs := strings.Split(out, "---\n")
	for _, d := range docs {
		if strings.TrimSpace(d) == "" {
			t.Fatalf("empty document in %q", out)
		}
	}
	return docs
}

func decodeBeta(t *testing.T, doc string) v1beta1.ETCDInstance {
	t.Helper()
	var out v1beta1.ETCDInstance
	if err := yaml.UnmarshalStrict([]byte(doc), &out); err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	return out
}

func decodeAlpha(t *testing.T, doc string) v1alpha1.ETCDInstance {
	t.Helper()
	var out v1alpha1.ETCDInstance
	if err := yaml.UnmarshalStrict([]byte(doc), &out); err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	return out
}

func TestConvertBetaAlphaBetaRoundTrip(t *testing.T) {
	in := writeFile(t, "beta.yaml", betaManifest)
	// Offline: a server that does not exist changes nothing.
	r := runPlugin(t, "", false, "convert", "-f", in, "--output-version", "v1alpha1", "--server", "http://127.0.0.1:1")
	expectCode(t, r, 0)
	alphaDocs := splitYAML(t, r.stdout)
	if len(alphaDocs) != 2 {
		t.Fatalf("%d documents:\n%s", len(alphaDocs), r.stdout)
	}
	alpha := decodeAlpha(t, alphaDocs[0])
	if alpha.APIVersion != "etcdaas.dev/v1alpha1" || alpha.Kind != "ETCDInstance" {
		t.Errorf("type %s %s", alpha.APIVersion, alpha.Kind)
	}
	if *alpha.Spec.Replicas != 5 || !alpha.Spec.WithTLSBundle || alpha.Status.State != v1alpha1.StateRunning || alpha.Status.Message != "all 5 members healthy" {
		t.Errorf("v1alpha1 fields %+v %+v", alpha.Spec, alpha.Status)
	}
	preserved := alpha.Annotations[etcdaas.PreservedFieldsAnnotation]
	for _, want := range []string{`"version":"3.6"`, `"storageClassName":"fast"`, `"8e9e05c52164694d"`, `"observedGeneration":2`} {
		if !strings.Contains(preserved, want) {
			t.Errorf("annotation lacks %s: %s", want, preserved)
		}
	}
	if alpha.Labels["team"] != "storage" {
		t.Errorf("labels %v", alpha.Labels)
	}
	// The small one has nothing v1alpha1 cannot say... except the defaulted version.
	small := decodeAlpha(t, alphaDocs[1])
	if *small.Spec.Replicas != 1 {
		t.Errorf("small %+v", small.Spec)
	}

	back := runPlugin(t, r.stdout, false, "convert", "-f", "-", "--output-version", "etcdaas.dev/v1beta1")
	expectCode(t, back, 0)
	betaDocs := splitYAML(t, back.stdout)
	if len(betaDocs) != 2 {
		t.Fatalf("%d documents", len(betaDocs))
	}
	// Compare with the original through the same decoding.
	originals := strings.Split(betaManifest, "---\n")[1:]
	for i := range betaDocs {
		got, want := decodeBeta(t, betaDocs[i]), decodeBeta(t, originals[i])
		if i == 1 {
			want.Spec.Version = etcdaas.DefaultVersion // defaulted on the way, as the server would
		}
		if _, ok := got.Annotations[etcdaas.PreservedFieldsAnnotation]; ok {
			t.Errorf("v1beta1 output carries the annotation")
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("document %d changed by the round trip\n got %+v\nwant %+v", i+1, got, want)
		}
	}
}

func TestConvertAlphaBetaAlphaRoundTrip(t *testing.T) {
	in := writeFile(t, "alpha.yaml", alphaManifest)
	r := runPlugin(t, "", false, "convert", "-f", in) // v1beta1 by default
	expectCode(t, r, 0)
	beta := decodeBeta(t, r.stdout)
	if beta.APIVersion != "etcdaas.dev/v1beta1" || *beta.Spec.Replicas != 3 || beta.Spec.TLS == nil || !beta.Spec.TLS.Enabled || beta.Status.Phase != v1beta1.PhaseRunning {
		t.Errorf("v1beta1 %+v", beta)
	}
	if c := beta.Status.Conditions; len(c) != 1 || c[0].Type != "Available" || c[0].Message != "deployment successful" {
		t.Errorf("conditions %+v", c)
	}

	back := runPlugin(t, r.stdout, false, "convert", "-f", "-", "--output-version", "v1alpha1")
	expectCode(t, back, 0)
	got, want := decodeAlpha(t, back.stdout), decodeAlpha(t, alphaManifest)
	// v1beta1 defaulting gave it a version, which v1alpha1 keeps in the annotation.
	want.Annotations = map[string]string{etcdaas.PreservedFieldsAnnotation: `{"spec":{"version":"3.7"}}`}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip\n got %+v\nwant %+v\n%s", got, want, back.stdout)
	}
}

func TestConvertJSON(t *testing.T) {
	one := `{"apiVersion":"etcdaas.dev/v1alpha1","kind":"ETCDInstance","metadata":{"name":"a"},"spec":{"replicas":1,"with_tls_bundle":false}}`
	in := writeFile(t, "one.json", one)
	r := runPlugin(t, "", false, "convert", "-f", in, "--output-version", "v1beta1", "-o", "json")
	expectCode(t, r, 0)
	var obj v1beta1.ETCDInstance
	if err := json.Unmarshal([]byte(r.stdout), &obj); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	if obj.Kind != "ETCDInstance" || obj.Name != "a" || *obj.Spec.Replicas != 1 {
		t.Errorf("%+v", obj)
	}
	if !strings.HasPrefix(r.stdout, "{\n    \"") {
		t.Errorf("not indented JSON: %q", r.stdout[:20])
	}

	// A stream of JSON objects, and a v1 List, give v1 Lists in JSON.
	two := writeFile(t, "two.json", one+"\n"+strings.Replace(one, `"a"`, `"b"`, 1))
	list := writeFile(t, "list.json", `{"apiVersion":"v1","kind":"List","items":[`+one+`]}`)
	for _, file := range []string{two, list} {
		r = runPlugin(t, "", false, "convert", "-f", file, "--output-version", "v1beta1", "-o", "json")
		expectCode(t, r, 0)
		var got struct {
			APIVersion string                 `json:"apiVersion"`
			Kind       string                 `json:"kind"`
			Items      []v1beta1.ETCDInstance `json:"items"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
			t.Fatalf("%v\n%s", err, r.stdout)
		}
		if got.Kind != "List" || got.APIVersion != "v1" || len(got.Items) == 0 || got.Items[0].APIVersion != "etcdaas.dev/v1beta1" {
			t.Errorf("%s: %+v", file, got)
		}
	}

	// JSON in, YAML out; two -f files make two documents.
	r = runPlugin(t, "", false, "convert", "-f", in, "-f", writeFile(t, "alpha.yaml", alphaManifest))
	expectCode(t, r, 0)
	if docs := splitYAML(t, r.stdout); len(docs) != 2 || !strings.Contains(docs[0], "name: a") || !strings.Contains(docs[1], "name: old") {
		t.Errorf("yaml %q", r.stdout)
	}
}

func TestConvertErrors(t *testing.T) {
	good := writeFile(t, "good.yaml", alphaManifest)
	for _, tc := range []struct {
		name   string
		args   []string
		stdin  string
		stderr string // prefix
	}{
		{"unknown version", []string{"-f", good, "--output-version", "v2"}, "", "error: unknown version \"v2\": served versions are etcdaas.dev/v1beta1 and etcdaas.dev/v1alpha1\n"},
		{"no file", nil, "", "error: at least one file is required: -f FILE (or -f - for stdin)\nSee 'kubectl etcdaas convert -h' for help and examples\n"},
		{"missing file", []string{"-f", "/nonexistent/x.yaml"}, "", "error: open /nonexistent/x.yaml: no such file or directory\n"},
		{"bad output", []string{"-f", good, "-o", "wide"}, "", "error: unable to match a printer suitable for the output format \"wide\", allowed formats are: json,yaml\n"},
		{"empty", []string{"-f", "-"}, "# nothing\n---\n", "error: no objects passed to convert\n"},
		{"unknown field", []string{"-f", "-"}, alphaManifest + "---\napiVersion: etcdaas.dev/v1alpha1\nkind: ETCDInstance\nmetadata: {name: x}\nspec: {replica: 3}\n", "error: <stdin>: document 2: "},
		{"other kind", []string{"-f", "-"}, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", "error: <stdin>: document 1: v1 ConfigMap is not an etcdaas.dev object: convert handles ETCDInstance\n"},
		{"not yaml", []string{"-f", "-"}, "spec: [unclosed\n", "error: <stdin>: document 1: "},
		{"scalar", []string{"-f", "-"}, "just a string\n", "error: <stdin>: document 1: not a YAML or JSON object\n"},
		{"bad list item", []string{"-f", "-"}, `{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Pod"}]}`, "error: <stdin>: document 1: items[0]: v1 Pod is not an etcdaas.dev object: convert handles ETCDInstance\n"},
		{"no kind", []string{"-f", "-"}, "metadata: {name: x}\n", "error: <stdin>: document 1: apiVersion and kind are required\n"},
		{"unknown kind", []string{"-f", "-"}, "apiVersion: etcdaas.dev/v1beta1\nkind: Backup\n", "error: <stdin>: document 1: "},
		{"positional", []string{good}, "", "error: unknown command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runPlugin(t, tc.stdin, false, append([]string{"convert"}, tc.args...)...)
			expectCode(t, r, 1)
			t.Logf("stderr: %s", r.stderr)
			if !strings.HasPrefix(r.stderr, tc.stderr) {
				t.Errorf("stderr\n got %q\nwant prefix %q", r.stderr, tc.stderr)
			}
			if r.stdout != "" {
				t.Errorf("output despite the error: %q", r.stdout)
			}
		})
	}
}
