package conversion

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1alpha1"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
)

// originalV1alpha1 is an object as clients of the original API wrote and read it.
const originalV1alpha1 = `{
  "apiVersion": "etcdaas.dev/v1alpha1",
  "kind": "ETCDInstance",
  "metadata": {"name": "my-etcd", "namespace": "default"},
  "spec": {"replicas": 2, "with_tls_bundle": true},
  "status": {"state": "running", "message": "deployment successful"}
}`

func TestOriginalV1alpha1DocumentKeepsItsWireFormat(t *testing.T) {
	c := New()
	for _, through := range ServedVersions {
		t.Run("through "+through.Version, func(t *testing.T) {
			obj, err := c.Decode([]byte(originalV1alpha1))
			if err != nil {
				t.Fatal(err)
			}
			mid, err := c.Convert(obj, through)
			if err != nil {
				t.Fatal(err)
			}
			back, err := c.Convert(mid, v1alpha1.SchemeGroupVersion)
			if err != nil {
				t.Fatal(err)
			}
			encoded, err := c.Encode(back, true)
			if err != nil {
				t.Fatal(err)
			}
			var got, want map[string]any
			if err := json.Unmarshal(encoded, &got); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(originalV1alpha1), &want); err != nil {
				t.Fatal(err)
			}
			metadata := got["metadata"].(map[string]any)
			// The encoder writes creationTimestamp: null for an unset timestamp.
			delete(metadata, "creationTimestamp")
			// Through v1beta1 the object picks up v1beta1's default etcd version, which
			// v1alpha1 can only carry in the annotation; through v1alpha1 nothing is added.
			if through == v1beta1.SchemeGroupVersion {
				annotations, _ := metadata["annotations"].(map[string]any)
				if preserved := annotations[etcdaas.PreservedFieldsAnnotation]; preserved != `{"spec":{"version":"3.7"}}` {
					t.Errorf("annotation = %v, want only the defaulted version", preserved)
				}
				delete(metadata, "annotations")
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("the original document changed:\n got: %s\nwant: %s", encoded, originalV1alpha1)
			}
		})
	}
}

func TestOriginalV1alpha1DocumentInV1beta1(t *testing.T) {
	beta := decodeToV1beta1(t, New(), originalV1alpha1)
	if got := ptr.Deref(beta.Spec.Replicas, 0); got != 2 {
		t.Errorf("spec.replicas = %d, want 2", got)
	}
	if beta.Spec.TLS == nil || !beta.Spec.TLS.Enabled {
		t.Errorf("spec.tls = %+v, want enabled", beta.Spec.TLS)
	}
	if beta.Status.Phase != v1beta1.PhaseRunning {
		t.Errorf("status.phase = %q, want Running", beta.Status.Phase)
	}
	available := meta.FindStatusCondition(beta.Status.Conditions, etcdaas.ConditionAvailable)
	if available == nil || available.Message != "deployment successful" || available.Status != metav1.ConditionTrue {
		t.Errorf("Available condition = %+v, want True with the v1alpha1 message", available)
	}
	if _, ok := beta.Annotations[etcdaas.PreservedFieldsAnnotation]; ok {
		t.Errorf("v1beta1 shows the preserved-fields annotation")
	}
}

func TestV1alpha1FieldWinsOverTheAnnotation(t *testing.T) {
	c := New()
	beta := &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "default"},
		Spec: v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](3), Version: "3.6",
			TLS: &v1beta1.TLSSpec{Enabled: false}},
		Status: v1beta1.ETCDInstanceStatus{Phase: v1beta1.PhaseScaling, Conditions: []metav1.Condition{{
			Type: etcdaas.ConditionAvailable, Status: metav1.ConditionTrue, Reason: "MembersReady", Message: "3/3 members ready",
			LastTransitionTime: metav1.Unix(1700000000, 0)}}},
	}
	out, err := c.Convert(beta, v1alpha1.SchemeGroupVersion)
	if err != nil {
		t.Fatal(err)
	}
	alpha := out.(*v1alpha1.ETCDInstance)
	if alpha.Status.State != v1alpha1.StateDeploying || alpha.Status.Message != "3/3 members ready" {
		t.Fatalf("status = %+v, want deploying with the Available message", alpha.Status)
	}
	if !strings.Contains(alpha.Annotations[etcdaas.PreservedFieldsAnnotation], `"version":"3.6"`) {
		t.Fatalf("annotation does not carry the version: %v", alpha.Annotations)
	}

	// An old client edits every field it knows about and keeps the annotation as it read it.
	alpha.Spec.Replicas = ptr.To[int32](5)
	alpha.Spec.WithTLSBundle = true
	alpha.Status.State = v1alpha1.StateFailed
	alpha.Status.Message = "member 2 lost"
	out, err = c.Convert(alpha, v1beta1.SchemeGroupVersion)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*v1beta1.ETCDInstance)
	if ptr.Deref(got.Spec.Replicas, 0) != 5 || got.Spec.TLS == nil || !got.Spec.TLS.Enabled || got.Spec.Version != "3.6" {
		t.Errorf("spec = %+v, want replicas 5, tls enabled, version 3.6", got.Spec)
	}
	if got.Status.Phase != v1beta1.PhaseFailed {
		t.Errorf("phase = %q, want Failed (the v1alpha1 state wins over the annotation's Scaling)", got.Status.Phase)
	}
	if c := meta.FindStatusCondition(got.Status.Conditions, etcdaas.ConditionAvailable); c == nil || c.Message != "member 2 lost" || c.Reason != "MembersReady" {
		t.Errorf("Available = %+v, want the old client's message on the preserved condition", c)
	}
}

func TestDefaultsPerVersion(t *testing.T) {
	c := New()
	for _, tc := range []struct {
		doc          string
		wantReplicas int32
	}{
		{`{"apiVersion":"etcdaas.dev/v1alpha1","kind":"ETCDInstance","metadata":{"name":"a"}}`, 1},
		{`{"apiVersion":"etcdaas.dev/v1beta1","kind":"ETCDInstance","metadata":{"name":"b"}}`, 3},
	} {
		beta := decodeToV1beta1(t, c, tc.doc)
		if got := ptr.Deref(beta.Spec.Replicas, 0); got != tc.wantReplicas {
			t.Errorf("%s: replicas = %d, want %d", tc.doc, got, tc.wantReplicas)
		}
	}
	// v1beta1 also defaults the etcd version; v1alpha1 cannot express one.
	if beta := decodeToV1beta1(t, c, `{"apiVersion":"etcdaas.dev/v1beta1","kind":"ETCDInstance","metadata":{"name":"b"},"spec":{"replicas":5}}`); beta.Spec.Version != etcdaas.DefaultVersion || *beta.Spec.Replicas != 5 {
		t.Errorf("spec = %+v, want version %s and the replicas given", beta.Spec, etcdaas.DefaultVersion)
	}
}

// decodeToV1beta1 decodes a document of any served version, defaulted as the server would,
// and converts it to v1beta1.
func decodeToV1beta1(t *testing.T, c *Converter, doc string) *v1beta1.ETCDInstance {
	t.Helper()
	obj, err := c.Decode([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Convert(obj, v1beta1.SchemeGroupVersion)
	if err != nil {
		t.Fatal(err)
	}
	return out.(*v1beta1.ETCDInstance)
}

func TestBadInput(t *testing.T) {
	c := New()
	for name, doc := range map[string]string{
		"unknown field":     `{"apiVersion":"etcdaas.dev/v1beta1","kind":"ETCDInstance","metadata":{"name":"a"},"spec":{"replica":3}}`,
		"other group":       `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}`,
		"malformed":         `{"apiVersion":`,
		"broken annotation": `{"apiVersion":"etcdaas.dev/v1alpha1","kind":"ETCDInstance","metadata":{"name":"a","annotations":{"etcdaas.dev/v1beta1-fields":"{nope"}}}`,
	} {
		t.Run(name, func(t *testing.T) {
			out, err := c.ConvertDocument([]byte(doc), v1beta1.SchemeGroupVersion, true)
			if err == nil {
				t.Fatalf("converted bad input to %s", out)
			}
		})
	}
	if _, err := ParseVersion("v2"); err == nil {
		t.Fatal("ParseVersion accepted v2")
	}
	if gv, err := ParseVersion("etcdaas.dev/v1alpha1"); err != nil || gv != v1alpha1.SchemeGroupVersion {
		t.Fatalf("ParseVersion(etcdaas.dev/v1alpha1) = %v, %v", gv, err)
	}
}

// TestAnUnreadablePreservedFieldsAnnotationIsRefused: converting a v1alpha1 object (or a list
// holding one) whose preserved-fields annotation is not the JSON the server writes fails,
// naming the object and the annotation, to either version. Converted to v1beta1 it would
// otherwise lose, without a word, the fields the annotation stood for (the server refuses the
// same object with a 422).
func TestAnUnreadablePreservedFieldsAnnotationIsRefused(t *testing.T) {
	c := New()
	bad := func(name string) v1alpha1.ETCDInstance {
		return v1alpha1.ETCDInstance{
			TypeMeta:   metav1.TypeMeta{APIVersion: "etcdaas.dev/v1alpha1", Kind: "ETCDInstance"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{etcdaas.PreservedFieldsAnnotation: `{"spec":{"bakup":{"schedule":"@daily"}}}`}},
		}
	}
	one := bad("misspelled")
	list := &v1alpha1.ETCDInstanceList{TypeMeta: metav1.TypeMeta{APIVersion: "etcdaas.dev/v1alpha1", Kind: "ETCDInstanceList"},
		Items: []v1alpha1.ETCDInstance{{ObjectMeta: metav1.ObjectMeta{Name: "fine"}}, bad("in-a-list")}}
	for name, in := range map[string]interface {
		DeepCopyObject() runtime.Object
	}{"misspelled": &one, "in-a-list": list} {
		for _, to := range ServedVersions {
			_, err := c.Convert(in.DeepCopyObject(), to)
			if err == nil || !strings.Contains(err.Error(), name+": metadata.annotations[etcdaas.dev/v1beta1-fields]") || !strings.Contains(err.Error(), `unknown field "spec.bakup"`) {
				t.Errorf("%s to %s: %v, want an error naming the object, the annotation and the unknown field", name, to.Version, err)
			}
		}
	}
}
