package event

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func TestValidate(t *testing.T) {
	good := corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: "db.1", Namespace: "ns"},
		InvolvedObject: corev1.ObjectReference{Kind: "ETCDInstance", Namespace: "ns", Name: "db"},
		Reason:         "MemberAdded",
	}
	s := strategy{}
	if errs := s.Validate(context.Background(), &good); len(errs) != 0 {
		t.Fatalf("valid event: %v", errs)
	}
	for name, mutate := range map[string]func(*corev1.Event){
		"another namespace":  func(e *corev1.Event) { e.InvolvedObject.Namespace = "other" },
		"no involved object": func(e *corev1.Event) { e.InvolvedObject.Name = "" },
		"no reason":          func(e *corev1.Event) { e.Reason = "" },
		"bad name":           func(e *corev1.Event) { e.Name = "a/b" },
	} {
		bad := good.DeepCopy()
		mutate(bad)
		if errs := s.ValidateUpdate(context.Background(), bad, &good); len(errs) == 0 {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestFieldSelectors(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	gvk := corev1.SchemeGroupVersion.WithKind("Event")
	for _, label := range []string{"involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid", "reason", "type", "source", "metadata.name"} {
		if _, _, err := scheme.ConvertFieldLabel(gvk, label, "x"); err != nil {
			t.Errorf("%s: %v", label, err)
		}
	}
	if _, _, err := scheme.ConvertFieldLabel(gvk, "message", "x"); err == nil {
		t.Error("message accepted as a field selector")
	}
	_, fields, err := getAttrs(&corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: "db.1", Namespace: "ns"},
		InvolvedObject: corev1.ObjectReference{Kind: "ETCDInstance", Namespace: "ns", Name: "db", UID: "u"},
		Source:         corev1.EventSource{Component: "etcdaas-controller"},
		Type:           "Normal",
	})
	if err != nil || fields["involvedObject.uid"] != "u" || fields["source"] != "etcdaas-controller" || fields["metadata.namespace"] != "ns" || fields["type"] != "Normal" {
		t.Fatalf("fields %v (%v)", fields, err)
	}
}

// TestSourceFieldSelector checks that the source field selector selects source.component,
// and reportingComponent only for an Event without one, as kube-apiserver does: an Event
// whose two differ is found by its source.component.
func TestSourceFieldSelector(t *testing.T) {
	for _, tc := range []struct {
		name      string
		component string
		reporting string
		want      string
	}{
		{name: "both", component: "kubelet", reporting: "etcdaas.dev/controller", want: "kubelet"},
		{name: "source only", component: "kubelet", want: "kubelet"},
		{name: "reporting only", reporting: "etcdaas.dev/controller", want: "etcdaas.dev/controller"},
	} {
		_, fields, err := getAttrs(&corev1.Event{
			ObjectMeta:          metav1.ObjectMeta{Name: "db.1", Namespace: "ns"},
			Source:              corev1.EventSource{Component: tc.component},
			ReportingController: tc.reporting,
		})
		if err != nil {
			t.Fatal(err)
		}
		if fields["source"] != tc.want {
			t.Errorf("%s: source = %q, want %q", tc.name, fields["source"], tc.want)
		}
	}
}
