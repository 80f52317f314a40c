package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilversion "k8s.io/apimachinery/pkg/util/version"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	versioned "github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned"
)

// gvkExtension is the value of x-kubernetes-group-version-kind.
type gvkExtension []struct {
	Group   string `json:"group"`
	Version string `json:"version"`
	Kind    string `json:"kind"`
}

// schemaDoc is the part of an OpenAPI schema the tests look at.
type schemaDoc struct {
	Description string               `json:"description"`
	Properties  map[string]schemaDoc `json:"properties"`
	GVK         gvkExtension         `json:"x-kubernetes-group-version-kind"`
	AllOf       []schemaDoc          `json:"allOf"`
	Ref         string               `json:"$ref"`
}

// findKind returns the name and schema of the definition for group/version kind.
func findKind(defs map[string]schemaDoc, group, version, kind string) (string, *schemaDoc) {
	for name, def := range defs {
		for _, gvk := range def.GVK {
			if gvk.Group == group && gvk.Version == version && gvk.Kind == kind {
				d := def
				return name, &d
			}
		}
	}
	return "", nil
}

// resolve follows $ref (directly or through allOf) to a definition.
func resolve(defs map[string]schemaDoc, s schemaDoc) schemaDoc {
	ref := s.Ref
	if ref == "" && len(s.AllOf) == 1 {
		ref = s.AllOf[0].Ref
	}
	if ref == "" {
		return s
	}
	name := ref[strings.LastIndex(ref, "/")+1:]
	return defs[name]
}

func checkDescriptions(t *testing.T, defs map[string]schemaDoc, instance *schemaDoc, specFields ...string) {
	t.Helper()
	if instance.Description == "" {
		t.Errorf("ETCDInstance has no description")
	}
	spec := resolve(defs, instance.Properties["spec"])
	for _, f := range specFields {
		if spec.Properties[f].Description == "" {
			t.Errorf("spec.%s has no description (spec schema %+v)", f, spec)
		}
	}
}

func TestOpenAPIV2(t *testing.T) {
	res := do(t, http.MethodGet, "/openapi/v2", nil, "Accept", "application/json")
	if res.code != http.StatusOK {
		t.Fatalf("/openapi/v2: %d %s", res.code, res.body)
	}
	var doc struct {
		Definitions map[string]schemaDoc `json:"definitions"`
		Paths       map[string]any       `json:"paths"`
	}
	if err := json.Unmarshal(res.body, &doc); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		version string
		fields  []string
	}{{"v1beta1", []string{"replicas", "version", "tls", "storage"}}, {"v1alpha1", []string{"replicas", "with_tls_bundle"}}} {
		for _, kind := range []string{"ETCDInstance", "ETCDInstanceList"} {
			name, def := findKind(doc.Definitions, "etcdaas.dev", c.version, kind)
			if def == nil {
				t.Errorf("/openapi/v2 has no definition with x-kubernetes-group-version-kind etcdaas.dev/%s %s", c.version, kind)
				continue
			}
			if kind == "ETCDInstance" {
				t.Logf("etcdaas.dev/%s ETCDInstance is %s", c.version, name)
				checkDescriptions(t, doc.Definitions, def, c.fields...)
			}
		}
		for _, p := range []string{"", "/status", "/scale"} {
			path := fmt.Sprintf("/apis/etcdaas.dev/%s/namespaces/{namespace}/etcdinstances/{name}%s", c.version, p)
			if _, ok := doc.Paths[path]; !ok {
				t.Errorf("/openapi/v2 lacks path %s", path)
			}
		}
	}
	if _, def := findKind(doc.Definitions, "autoscaling", "v1", "Scale"); def == nil {
		t.Errorf("/openapi/v2 has no autoscaling/v1 Scale")
	} else if len(def.GVK) != 1 {
		t.Errorf("Scale has x-kubernetes-group-version-kind %+v, want only autoscaling/v1", def.GVK)
	}
}

func TestOpenAPIV3(t *testing.T) {
	res := do(t, http.MethodGet, "/openapi/v3", nil)
	if res.code != http.StatusOK {
		t.Fatalf("/openapi/v3: %d %s", res.code, res.body)
	}
	var index struct {
		Paths map[string]struct {
			ServerRelativeURL string `json:"serverRelativeURL"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(res.body, &index); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		version string
		fields  []string
	}{{"v1beta1", []string{"replicas", "version", "tls", "storage"}}, {"v1alpha1", []string{"replicas", "with_tls_bundle"}}} {
		t.Run(c.version, func(t *testing.T) {
			path := "apis/etcdaas.dev/" + c.version
			if _, ok := index.Paths[path]; !ok {
				t.Errorf("/openapi/v3 index lacks %s: %v", path, index.Paths)
			}
			res := do(t, http.MethodGet, "/openapi/v3/"+path, nil)
			if res.code != http.StatusOK {
				t.Fatalf("/openapi/v3/%s: %d %s", path, res.code, res.body)
			}
			var doc struct {
				Components struct {
					Schemas map[string]schemaDoc `json:"schemas"`
				} `json:"components"`
			}
			if err := json.Unmarshal(res.body, &doc); err != nil {
				t.Fatal(err)
			}
			for _, kind := range []string{"ETCDInstance", "ETCDInstanceList"} {
				_, def := findKind(doc.Components.Schemas, "etcdaas.dev", c.version, kind)
				if def == nil {
					t.Errorf("%s has no schema with x-kubernetes-group-version-kind etcdaas.dev/%s %s", path, c.version, kind)
					continue
				}
				if kind == "ETCDInstance" {
					checkDescriptions(t, doc.Components.Schemas, def, c.fields...)
				}
			}
			if _, def := findKind(doc.Components.Schemas, "autoscaling", "v1", "Scale"); def == nil {
				t.Errorf("%s has no autoscaling/v1 Scale schema", path)
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	ctx := testContext(t)
	ns := namespace(t)
	base := func(version string) string {
		return fmt.Sprintf("/apis/etcdaas.dev/%s/namespaces/%s/etcdinstances", version, ns)
	}

	cases := []struct {
		name       string
		version    string
		query      string
		body       string
		wantCode   int
		wantInBody string
		wantField  string
	}{
		{"malformed JSON", "v1beta1", "", `{"apiVersion":"etcdaas.dev/v1beta1","kind":"ETCDInstance","metadata":{"name":"x"`, http.StatusBadRequest, "", ""},
		{"unknown field, strict", "v1beta1", "?fieldValidation=Strict",
			`{"apiVersion":"etcdaas.dev/v1beta1","kind":"ETCDInstance","metadata":{"name":"strict"},"spec":{"replicas":3,"bogus":true}}`,
			http.StatusBadRequest, `unknown field \"spec.bogus\"`, ""},
		{"unknown v1alpha1 field, strict", "v1alpha1", "?fieldValidation=Strict",
			`{"apiVersion":"etcdaas.dev/v1alpha1","kind":"ETCDInstance","metadata":{"name":"strict"},"spec":{"replicas":3,"tls":{"enabled":true}}}`,
			http.StatusBadRequest, `unknown field \"spec.tls\"`, ""},
		{"invalid name", "v1beta1", "",
			`{"apiVersion":"etcdaas.dev/v1beta1","kind":"ETCDInstance","metadata":{"name":"Not_A_Label"},"spec":{"replicas":3}}`,
			http.StatusUnprocessableEntity, "", "metadata.name"},
		{"name too long", "v1alpha1", "",
			`{"apiVersion":"etcdaas.dev/v1alpha1","kind":"ETCDInstance","metadata":{"name":"` + strings.Repeat("a", 51) + `"},"spec":{"replicas":3}}`,
			http.StatusUnprocessableEntity, "", "metadata.name"},
		{"replicas 10 v1beta1", "v1beta1", "",
			`{"apiVersion":"etcdaas.dev/v1beta1","kind":"ETCDInstance","metadata":{"name":"ten"},"spec":{"replicas":10}}`,
			http.StatusUnprocessableEntity, "", "spec.replicas"},
		{"replicas 0 v1alpha1", "v1alpha1", "",
			`{"apiVersion":"etcdaas.dev/v1alpha1","kind":"ETCDInstance","metadata":{"name":"zero"},"spec":{"replicas":0}}`,
			http.StatusUnprocessableEntity, "", "spec.replicas"},
		{"bad version", "v1beta1", "",
			`{"apiVersion":"etcdaas.dev/v1beta1","kind":"ETCDInstance","metadata":{"name":"ver"},"spec":{"version":"banana"}}`,
			http.StatusUnprocessableEntity, "", "spec.version"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := do(t, http.MethodPost, base(c.version)+c.query, []byte(c.body))
			if res.code != c.wantCode {
				t.Fatalf("code %d, want %d: %s", res.code, c.wantCode, res.body)
			}
			if c.wantInBody != "" && !strings.Contains(string(res.body), c.wantInBody) {
				t.Errorf("body %s does not contain %s", res.body, c.wantInBody)
			}
			if c.wantField != "" {
				if got := causeFields(res.body); len(got) == 0 || got[0] != c.wantField {
					t.Errorf("causes fields %v, want %s first: %s", got, c.wantField, res.body)
				}
			}
		})
	}

	cs, _ := clients(t)
	list, err := cs.EtcdaasV1beta1().ETCDInstances(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 0 {
		t.Errorf("bad input stored %d objects", len(list.Items))
	}

	checkTLSChangeRefused(t, ctx, cs, ns, base)
}

// causeFields lists the fields of the causes of the Status in body, nil when body is no Status
// with details.
func causeFields(body []byte) []string {
	var status metav1.Status
	if err := json.Unmarshal(body, &status); err != nil || status.Details == nil {
		return nil
	}
	var out []string
	for _, c := range status.Details.Causes {
		out = append(out, c.Field)
	}
	return out
}

// checkTLSChangeRefused checks the answers to TLS changes of an instance created in ns.
func checkTLSChangeRefused(t *testing.T, ctx context.Context, cs *versioned.Clientset, ns string, base func(version string) string) {
	t.Helper()
	// Updates report the field path of the version sent: TLS is immutable, and v1alpha1
	// calls it with_tls_bundle.
	if _, err := cs.EtcdaasV1beta1().ETCDInstances(ns).Create(ctx, &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "immutable"}, Spec: v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](1)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for version, patch := range map[string]string{
		"v1alpha1": `{"spec":{"with_tls_bundle":true}}`,
		"v1beta1":  `{"spec":{"tls":{"enabled":true}}}`,
	} {
		res := do(t, http.MethodPatch, base(version)+"/immutable", []byte(patch), "Content-Type", "application/merge-patch+json")
		want := map[string]string{"v1alpha1": "spec.with_tls_bundle", "v1beta1": "spec.tls.enabled"}[version]
		if res.code != http.StatusUnprocessableEntity {
			t.Errorf("%s TLS change: %d %s, want 422", version, res.code, res.body)
		} else if got := causeFields(res.body); len(got) == 0 || got[0] != want {
			t.Errorf("%s TLS change: causes %v, want %s: %s", version, got, want, res.body)
		}
	}
	// Spelling out plaintext, and dropping it again, changes nothing and is no TLS change.
	for _, patch := range []string{`{"spec":{"tls":{"enabled":false}}}`, `{"spec":{"tls":null}}`} {
		res := do(t, http.MethodPatch, base("v1beta1")+"/immutable", []byte(patch), "Content-Type", "application/merge-patch+json")
		if res.code != http.StatusOK {
			t.Errorf("patch %s of a plaintext instance: %d %s, want 200", patch, res.code, res.body)
		}
	}
}

func TestProtobufAndTableRequests(t *testing.T) {
	ctx := testContext(t)
	cs, _ := clients(t)
	ns := namespace(t)
	if _, err := cs.EtcdaasV1beta1().ETCDInstances(ns).Create(ctx, &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "meta"}, Spec: v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](3)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	mc, err := metadata.NewForConfig(shared.Config())
	if err != nil {
		t.Fatal(err)
	}
	for _, version := range []string{"v1beta1", "v1alpha1"} {
		list := fmt.Sprintf("/apis/etcdaas.dev/%s/namespaces/%s/etcdinstances", version, ns)
		checkListMediaTypes(t, version, list)
		checkMetadataClient(t, ctx, mc, version, ns)
		checkTable(t, version, list+"/meta")
	}
	// Only a media type the server does not serve (CBOR, behind its feature gate): a clean 406.
	res := do(t, http.MethodGet, fmt.Sprintf("/apis/etcdaas.dev/v1beta1/namespaces/%s/etcdinstances", ns), nil,
		"Accept", "application/cbor")
	if res.code != http.StatusNotAcceptable {
		t.Errorf("CBOR only: %d %s, want 406", res.code, res.body)
	}
}

// checkListMediaTypes checks that the list at path list answers each Accept its clients send
// with the media type and kind they ask for.
func checkListMediaTypes(t *testing.T, version, list string) {
	t.Helper()
	cases := []struct {
		accept   string
		wantType string
		wantKind string
	}{
		// The namespace controller and the garbage collector (metadata client).
		{"application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json",
			runtime.ContentTypeProtobuf, "PartialObjectMetadataList"},
		// Clients that prefer protobuf for everything (kube-controller-manager's defaults).
		{"application/vnd.kubernetes.protobuf, application/json", runtime.ContentTypeProtobuf, "ETCDInstanceList"},
		{"application/json;as=Table;v=v1;g=meta.k8s.io", runtime.ContentTypeJSON, "Table"},
	}
	for _, c := range cases {
		res := do(t, http.MethodGet, list, nil, "Accept", c.accept)
		if res.code != http.StatusOK {
			t.Errorf("%s Accept %q: %d %s", version, c.accept, res.code, res.body)
			continue
		}
		if got := res.header.Get("Content-Type"); !strings.HasPrefix(got, c.wantType) {
			t.Errorf("%s Accept %q: content-type %s, want %s", version, c.accept, got, c.wantType)
			continue
		}
		var kind string
		if c.wantType == runtime.ContentTypeProtobuf {
			var unknown runtime.Unknown
			if !bytes.HasPrefix(res.body, protobufMagic) || unknown.Unmarshal(res.body[len(protobufMagic):]) != nil {
				t.Errorf("%s Accept %q: not protobuf: %.40q", version, c.accept, res.body)
				continue
			}
			kind = unknown.Kind
		} else {
			var meta metav1.TypeMeta
			if err := json.Unmarshal(res.body, &meta); err != nil {
				t.Errorf("%s Accept %q: not JSON: %v", version, c.accept, err)
				continue
			}
			kind = meta.Kind
		}
		if kind != c.wantKind {
			t.Errorf("%s Accept %q: kind %s, want %s", version, c.accept, kind, c.wantKind)
		}
	}
}

// checkMetadataClient checks the metadata client, as the garbage collector and namespace
// controller use it: it asks for protobuf PartialObjectMetadata with JSON fallbacks.
func checkMetadataClient(t *testing.T, ctx context.Context, mc metadata.Interface, version, ns string) {
	t.Helper()
	// The metadata client, as the garbage collector and namespace controller use it: it
	// asks for protobuf PartialObjectMetadata with JSON fallbacks.
	gvr := schema.GroupVersionResource{Group: "etcdaas.dev", Version: version, Resource: "etcdinstances"}
	metaList, err := mc.Resource(gvr).Namespace(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Errorf("%s metadata list: %v", version, err)
	} else if len(metaList.Items) != 1 || metaList.Items[0].Name != "meta" {
		t.Errorf("%s metadata list: %+v", version, metaList.Items)
	}
	metaObj, err := mc.Resource(gvr).Namespace(ns).Get(ctx, "meta", metav1.GetOptions{})
	if err != nil || metaObj.Name != "meta" || metaObj.UID == "" {
		t.Errorf("%s metadata get: %v %+v", version, err, metaObj)
	}
}

// checkTable checks the Table of the instance "meta" at path: its columns, wide ones apart,
// and its row.
func checkTable(t *testing.T, version, path string) {
	t.Helper()
	res := do(t, http.MethodGet, path, nil, "Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	var table metav1.Table
	if err := json.Unmarshal(res.body, &table); err != nil || res.code != http.StatusOK {
		t.Fatalf("%s table: %d %v %s", version, res.code, err, res.body)
	}
	var names, wide []string
	for _, c := range table.ColumnDefinitions {
		if c.Priority == 0 {
			names = append(names, c.Name)
		} else {
			wide = append(wide, c.Name) // shown by kubectl get -o wide
		}
	}
	if strings.Join(names, ",") != "Name,Replicas,Ready,Phase,Version,Age" || strings.Join(wide, ",") != "TLS,Members,Leader" {
		t.Errorf("%s table columns %v, wide %v", version, names, wide)
	}
	if len(table.Rows) != 1 || table.Rows[0].Cells[0] != "meta" || table.Rows[0].Cells[1] != float64(3) || table.Rows[0].Cells[4] != "3.7" {
		t.Errorf("%s table rows %+v", version, table.Rows)
	}
}

func TestHealthEndpoints(t *testing.T) {
	anonymous := &rest.Config{Host: shared.URL, TLSClientConfig: rest.TLSClientConfig{CAData: shared.AdminConfig.CAData}}
	client, err := rest.HTTPClientFor(anonymous)
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) (int, string) {
		resp, err := client.Get(shared.URL + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		return resp.StatusCode, b.String()
	}
	for _, path := range []string{"/livez", "/healthz", "/readyz"} {
		if code, body := get(path); code != http.StatusOK || body != "ok" {
			t.Errorf("anonymous GET %s: %d %q", path, code, body)
		}
	}
	code, body := get("/readyz?verbose")
	if code != http.StatusOK || !strings.Contains(body, "[+]etcd-readiness ok") {
		t.Errorf("/readyz?verbose: %d %s", code, body)
	}
	code, body = get("/livez?verbose")
	if code != http.StatusOK || !strings.Contains(body, "[+]etcd ok") {
		t.Errorf("/livez?verbose: %d %s", code, body)
	}
	code, body = get("/version")
	var info version.Info
	if err := json.Unmarshal([]byte(body), &info); code != http.StatusOK || err != nil {
		t.Errorf("/version: %d %v %s", code, err, body)
	}
	// kubectl version parses gitVersion as semver.
	if v, err := utilversion.ParseSemantic(info.GitVersion); err != nil || v.Major() != 1 || info.Major != "1" {
		t.Errorf("/version gitVersion %q: %v", info.GitVersion, err)
	}
	if code, _ := get("/apis/etcdaas.dev/v1beta1/etcdinstances"); code != http.StatusForbidden && code != http.StatusUnauthorized {
		t.Errorf("anonymous list: %d, want 401 or 403", code)
	}
}
