package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// listOf decodes a converted v1 List (YAML or JSON) into items of type T, strictly.
func listOf[T any](t *testing.T, out string) []T {
	t.Helper()
	var got struct {
		APIVersion string          `json:"apiVersion"`
		Kind       string          `json:"kind"`
		Metadata   metav1.ListMeta `json:"metadata"`
		Items      []T             `json:"items"`
	}
	if err := yaml.UnmarshalStrict([]byte(out), &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got.APIVersion != "v1" || got.Kind != "List" {
		t.Fatalf("not a v1 List: %s %s\n%s", got.APIVersion, got.Kind, out)
	}
	return got.Items
}

// names are the names of instances, in order.
func names(items []v1beta1.ETCDInstance) []string {
	out := make([]string, len(items))
	for i := range items {
		out[i] = items[i].Name
	}
	return out
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
	// Two objects in one file: a v1 List, as kubectl convert prints them.
	alphas := listOf[v1alpha1.ETCDInstance](t, r.stdout)
	if len(alphas) != 2 {
		t.Fatalf("%d items:\n%s", len(alphas), r.stdout)
	}
	alpha := alphas[0]
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
	small := alphas[1]
	if *small.Spec.Replicas != 1 {
		t.Errorf("small %+v", small.Spec)
	}

	back := runPlugin(t, r.stdout, false, "convert", "-f", "-", "--output-version", "etcdaas.dev/v1beta1")
	expectCode(t, back, 0)
	betas := listOf[v1beta1.ETCDInstance](t, back.stdout)
	if len(betas) != 2 {
		t.Fatalf("%d items", len(betas))
	}
	// Compare with the original through the same decoding.
	originals := strings.Split(betaManifest, "---\n")[1:]
	for i := range betas {
		got, want := betas[i], decodeBeta(t, originals[i])
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

	// Standard input is a stream, never a single file: a List, even of one object, as
	// kubectl convert prints it.
	back := runPlugin(t, r.stdout, false, "convert", "-f", "-", "--output-version", "v1alpha1")
	expectCode(t, back, 0)
	alphas := listOf[v1alpha1.ETCDInstance](t, back.stdout)
	if len(alphas) != 1 {
		t.Fatalf("%d items:\n%s", len(alphas), back.stdout)
	}
	got, want := alphas[0], decodeAlpha(t, alphaManifest)
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

	// A stream of JSON objects, a v1 List and an ETCDInstanceList (whose items, as the
	// server lists them, have no apiVersion nor kind) give v1 Lists in JSON.
	other := strings.Replace(one, `"a"`, `"b"`, 1)
	two := writeFile(t, "two.json", one+"\n"+other)
	list := writeFile(t, "list.json", `{"apiVersion":"v1","kind":"List","items":[`+one+`,`+other+`]}`)
	typed := writeFile(t, "typed.json", `{"apiVersion":"etcdaas.dev/v1alpha1","kind":"ETCDInstanceList","metadata":{},"items":[`+
		`{"metadata":{"name":"a"},"spec":{"replicas":1}},{"metadata":{"name":"b"},"spec":{"replicas":3}}]}`)
	for _, file := range []string{two, list, typed} {
		r = runPlugin(t, "", false, "convert", "-f", file, "--output-version", "v1beta1", "-o", "json")
		expectCode(t, r, 0)
		if !strings.HasPrefix(r.stdout, "{\n    \"kind\": \"List\",\n    \"apiVersion\": \"v1\",\n    \"metadata\": {},\n    \"items\": [") {
			t.Errorf("%s: not an indented JSON List: %s", file, r.stdout)
		}
		items := listOf[v1beta1.ETCDInstance](t, r.stdout)
		if got := names(items); !reflect.DeepEqual(got, []string{"a", "b"}) || items[0].APIVersion != "etcdaas.dev/v1beta1" || items[1].Kind != "ETCDInstance" {
			t.Errorf("%s: %+v", file, items)
		}
	}
	// A one-item List in a single file is that item, as kubectl convert prints it.
	list = writeFile(t, "list.json", `{"apiVersion":"v1","kind":"List","items":[`+one+`]}`)
	r = runPlugin(t, "", false, "convert", "-f", list, "-o", "json")
	expectCode(t, r, 0)
	if err := json.Unmarshal([]byte(r.stdout), &obj); err != nil || obj.Kind != "ETCDInstance" || obj.Name != "a" {
		t.Errorf("one-item List: %v %+v\n%s", err, obj, r.stdout)
	}

	// JSON in, YAML out; two -f files make a List, in their order.
	r = runPlugin(t, "", false, "convert", "-f", in, "-f", writeFile(t, "alpha.yaml", alphaManifest))
	expectCode(t, r, 0)
	if got := names(listOf[v1beta1.ETCDInstance](t, r.stdout)); !reflect.DeepEqual(got, []string{"a", "old"}) {
		t.Errorf("items %v\n%s", got, r.stdout)
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
		{"missing file", []string{"-f", "/nonexistent/x.yaml"}, "", "error: the path \"/nonexistent/x.yaml\" does not exist\n"},
		{"bad output", []string{"-f", good, "-o", "wide"}, "", "error: unable to match a printer suitable for the output format \"wide\", allowed formats are: json,yaml\n"},
		{"empty", []string{"-f", "-"}, "# nothing\n---\n", "error: no objects passed to convert\n"},
		{"unknown field", []string{"-f", "-"}, alphaManifest + "---\napiVersion: etcdaas.dev/v1alpha1\nkind: ETCDInstance\nmetadata: {name: x}\nspec: {replica: 3}\n", "error: STDIN: etcdaas.dev/v1alpha1 ETCDInstance \"x\": strict decoding error: unknown field \"spec.replica\"\n"},
		{"other kind", []string{"-f", "-"}, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", "error: STDIN: v1 ConfigMap \"x\": not an etcdaas.dev object: convert handles ETCDInstance\n"},
		{"not yaml", []string{"-f", "-"}, "spec: [unclosed\n", "error: error parsing STDIN: error converting YAML to JSON: yaml: line 1: "},
		{"scalar", []string{"-f", "-"}, "just a string\n", "error: unable to decode \"STDIN\": json: cannot unmarshal string"},
		{"bad list item", []string{"-f", "-"}, `{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Pod"}]}`, "error: STDIN: v1 Pod: not an etcdaas.dev object: convert handles ETCDInstance\n"},
		{"no kind", []string{"-f", "-"}, "metadata: {name: x}\n", "error: unable to decode \"STDIN\": Object 'Kind' is missing in '{\"metadata\":{\"name\":\"x\"}}'\n"},
		{"unknown kind", []string{"-f", "-"}, "apiVersion: etcdaas.dev/v1beta1\nkind: Backup\n", "error: STDIN: etcdaas.dev/v1beta1 Backup: no kind \"Backup\" is registered"},
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

// writeTree writes files (path relative to a new temporary directory: content) and returns
// the directory.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// alphaNamed is a v1alpha1 ETCDInstance manifest named name.
func alphaNamed(name string) string {
	return "apiVersion: etcdaas.dev/v1alpha1\nkind: ETCDInstance\nmetadata: {name: " + name + "}\nspec: {replicas: 1}\n"
}

func TestConvertDirectory(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"10-multi.yaml": betaManifest, // my-etcd and small
		"20-one.json":   `{"apiVersion":"etcdaas.dev/v1alpha1","kind":"ETCDInstance","metadata":{"name":"a"},"spec":{"replicas":1}}`,
		"30-list.yml": `apiVersion: v1
kind: List
items:
- {apiVersion: etcdaas.dev/v1alpha1, kind: ETCDInstance, metadata: {name: l1}, spec: {replicas: 1}}
- {apiVersion: etcdaas.dev/v1alpha1, kind: ETCDInstance, metadata: {name: l2}, spec: {replicas: 1}}
`,
		"README.md":               "# not a manifest: skipped, as kubectl skips it\n",
		"notes.txt":               "spec: [not yaml\n",
		"sub/40-deep.yaml":        alphaNamed("deep"),
		"sub/more/50-deeper.json": `{"apiVersion":"etcdaas.dev/v1beta1","kind":"ETCDInstance","metadata":{"name":"deeper"}}`,
		"sub/skip.txt":            "not read\n",
	})
	top := []string{"my-etcd", "small", "a", "l1", "l2"}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"directory", []string{"-f", dir}, top},
		{"directory with a trailing slash", []string{"-f", dir + "/"}, top},
		{"recursive", []string{"-f", dir, "-R"}, append(slices.Clone(top), "deep", "deeper")},
		{"recursive long flag", []string{"--recursive", "--filename", dir}, append(slices.Clone(top), "deep", "deeper")},
		{"directory then file", []string{"-f", filepath.Join(dir, "sub"), "-f", filepath.Join(dir, "20-one.json")}, []string{"deep", "a"}},
		{"comma-separated", []string{"-f", filepath.Join(dir, "20-one.json") + "," + filepath.Join(dir, "sub")}, []string{"a", "deep"}},
		{"file and stdin", []string{"-f", filepath.Join(dir, "20-one.json"), "-f", "-"}, []string{"a", "in"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, output := range []string{"yaml", "json"} {
				r := runPlugin(t, alphaNamed("in"), false, append([]string{"convert", "--output-version", "v1beta1", "-o", output}, tc.args...)...)
				expectCode(t, r, 0)
				items := listOf[v1beta1.ETCDInstance](t, r.stdout)
				if got := names(items); !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("-o %s: items %v, want %v\n%s", output, got, tc.want, r.stdout)
				}
				for _, item := range items {
					if item.APIVersion != "etcdaas.dev/v1beta1" || item.Kind != "ETCDInstance" || item.Spec.Replicas == nil {
						t.Errorf("-o %s: item %+v", output, item)
					}
				}
			}
		})
	}

	// v1alpha1 out: the directory's v1beta1 fields are kept in the annotation.
	r := runPlugin(t, "", false, "convert", "-f", dir, "--output-version", "v1alpha1")
	expectCode(t, r, 0)
	alphas := listOf[v1alpha1.ETCDInstance](t, r.stdout)
	if len(alphas) != len(top) || !strings.Contains(alphas[0].Annotations[etcdaas.PreservedFieldsAnnotation], `"storageClassName":"fast"`) {
		t.Errorf("v1alpha1 %+v", alphas)
	}

	// A directory holding a single file of one object is that object, as kubectl convert
	// prints it (a single item is implied).
	r = runPlugin(t, "", false, "convert", "-f", filepath.Join(dir, "sub"))
	expectCode(t, r, 0)
	if got := decodeBeta(t, r.stdout); got.Name != "deep" || got.Kind != "ETCDInstance" {
		t.Errorf("lone file: %+v", got)
	}
}

func TestConvertDirectoryErrors(t *testing.T) {
	bad := writeTree(t, map[string]string{
		"a-good.yaml":  alphaNamed("good"),
		"b-typo.yaml":  "apiVersion: etcdaas.dev/v1alpha1\nkind: ETCDInstance\nmetadata: {name: typo}\nspec: {replica: 3}\n",
		"c-other.json": `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm"}}`,
		"d-broken.yml": "spec: [unclosed\n",
		"e-notes.txt":  "ignored\n",
	})
	empty := writeTree(t, map[string]string{"notes.txt": "no manifest here\n"})
	for _, tc := range []struct {
		name   string
		args   []string
		stderr []string // lines
	}{
		{"every bad file named", []string{"-f", bad}, []string{
			"error: error parsing " + filepath.Join(bad, "d-broken.yml") + ": error converting YAML to JSON: yaml: line 1: did not find expected ',' or ']'",
			"error: " + filepath.Join(bad, "b-typo.yaml") + `: etcdaas.dev/v1alpha1 ETCDInstance "typo": strict decoding error: unknown field "spec.replica"`,
			"error: " + filepath.Join(bad, "c-other.json") + `: v1 ConfigMap "cm": not an etcdaas.dev object: convert handles ETCDInstance`,
		}},
		{"no manifest in the directory", []string{"-f", empty}, []string{
			"error: error reading [" + empty + "]: recognized file extensions are [.json .yaml .yml]",
		}},
		{"empty subdirectory only read with -R", []string{"-f", filepath.Dir(empty) + "/" + filepath.Base(empty), "-R"}, []string{
			"error: error reading [" + empty + "]: recognized file extensions are [.json .yaml .yml]",
		}},
		{"stdin twice", []string{"-f", "-", "-f", "-"}, []string{"error: standard input cannot be used for multiple arguments"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runPlugin(t, alphaNamed("in"), false, append([]string{"convert"}, tc.args...)...)
			expectCode(t, r, 1)
			if want := strings.Join(tc.stderr, "\n") + "\n"; r.stderr != want {
				t.Errorf("stderr\n got %q\nwant %q", r.stderr, want)
			}
			if r.stdout != "" {
				t.Errorf("output despite the error: %q", r.stdout)
			}
		})
	}
}
