package validation

import (
	"strings"
	"testing"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
)

func validInstance() *etcdaas.ETCDInstance {
	return &etcdaas.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "my-etcd", Namespace: "default", ResourceVersion: "1"},
		Spec:       etcdaas.ETCDInstanceSpec{Replicas: 3, Version: "3.7"},
	}
}

// fields returns "type field" for each error, the part a client acts on.
func fields(errs field.ErrorList) []string {
	var out []string
	for _, err := range errs {
		out = append(out, string(err.Type)+" "+err.Field)
	}
	return out
}

func expect(t *testing.T, errs field.ErrorList, want ...string) {
	t.Helper()
	got := fields(errs)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("errors:\n  got  %q\n  want %q\n(%v)", got, want, errs.ToAggregate())
	}
}

func TestValidateETCDInstance(t *testing.T) {
	for name, tc := range map[string]struct {
		mutate func(*etcdaas.ETCDInstance)
		want   []string
	}{
		"valid":                 {func(*etcdaas.ETCDInstance) {}, nil},
		"name of 50 characters": {func(o *etcdaas.ETCDInstance) { o.Name = "a" + strings.Repeat("b", 49) }, nil},
		"name of 51 characters": {func(o *etcdaas.ETCDInstance) { o.Name = "a" + strings.Repeat("b", 50) }, []string{"FieldValueInvalid metadata.name"}},
		"name with a dot":       {func(o *etcdaas.ETCDInstance) { o.Name = "my.etcd" }, []string{"FieldValueInvalid metadata.name"}},
		"name starting with 0":  {func(o *etcdaas.ETCDInstance) { o.Name = "0etcd" }, []string{"FieldValueInvalid metadata.name"}},
		"name with upper case":  {func(o *etcdaas.ETCDInstance) { o.Name = "MyEtcd" }, []string{"FieldValueInvalid metadata.name"}},
		"missing namespace":     {func(o *etcdaas.ETCDInstance) { o.Namespace = "" }, []string{"FieldValueRequired metadata.namespace"}},
		"replicas 0":            {func(o *etcdaas.ETCDInstance) { o.Spec.Replicas = 0 }, []string{"FieldValueInvalid spec.replicas"}},
		"replicas 1":            {func(o *etcdaas.ETCDInstance) { o.Spec.Replicas = 1 }, nil},
		"replicas 9":            {func(o *etcdaas.ETCDInstance) { o.Spec.Replicas = 9 }, nil},
		"replicas 10":           {func(o *etcdaas.ETCDInstance) { o.Spec.Replicas = 10 }, []string{"FieldValueInvalid spec.replicas"}},
		"negative replicas":     {func(o *etcdaas.ETCDInstance) { o.Spec.Replicas = -1 }, []string{"FieldValueInvalid spec.replicas"}},
		"missing version":       {func(o *etcdaas.ETCDInstance) { o.Spec.Version = "" }, []string{"FieldValueRequired spec.version"}},
		"version 2.3":           {func(o *etcdaas.ETCDInstance) { o.Spec.Version = "2.3" }, []string{"FieldValueInvalid spec.version"}},
		"patch version":         {func(o *etcdaas.ETCDInstance) { o.Spec.Version = "3.7.3" }, []string{"FieldValueInvalid spec.version"}},
		"zero storage size": {func(o *etcdaas.ETCDInstance) {
			o.Spec.Storage = &etcdaas.StorageSpec{Size: resource.NewQuantity(0, resource.BinarySI)}
		}, []string{"FieldValueInvalid spec.storage.size"}},
		"bad storage class name": {func(o *etcdaas.ETCDInstance) {
			o.Spec.Storage = &etcdaas.StorageSpec{StorageClassName: ptr.To("Fast SSD")}
		}, []string{"FieldValueInvalid spec.storage.storageClassName"}},
		"good storage": {func(o *etcdaas.ETCDInstance) {
			o.Spec.Storage = &etcdaas.StorageSpec{Size: ptr.To(resource.MustParse("1Gi")), StorageClassName: ptr.To("standard")}
		}, nil},
	} {
		t.Run(name, func(t *testing.T) {
			obj := validInstance()
			tc.mutate(obj)
			expect(t, ValidateETCDInstance(obj), tc.want...)
		})
	}
}

func TestValidateETCDInstanceUpdate(t *testing.T) {
	for name, tc := range map[string]struct {
		old, new func(*etcdaas.ETCDInstance)
		want     []string
	}{
		"replicas change": {func(*etcdaas.ETCDInstance) {}, func(o *etcdaas.ETCDInstance) { o.Spec.Replicas = 5 }, nil},
		"replicas to 10":  {func(*etcdaas.ETCDInstance) {}, func(o *etcdaas.ETCDInstance) { o.Spec.Replicas = 10 }, []string{"FieldValueInvalid spec.replicas"}},
		"turn tls on": {func(*etcdaas.ETCDInstance) {}, func(o *etcdaas.ETCDInstance) { o.Spec.TLS = &etcdaas.TLSSpec{Enabled: true} },
			[]string{"FieldValueInvalid spec.tls"}},
		"turn tls off": {func(o *etcdaas.ETCDInstance) { o.Spec.TLS = &etcdaas.TLSSpec{Enabled: true} }, func(o *etcdaas.ETCDInstance) { o.Spec.TLS.Enabled = false },
			[]string{"FieldValueInvalid spec.tls"}},
		"keep tls": {func(o *etcdaas.ETCDInstance) { o.Spec.TLS = &etcdaas.TLSSpec{Enabled: true} }, func(o *etcdaas.ETCDInstance) { o.Spec.Replicas = 1 }, nil},
		"change storage": {func(o *etcdaas.ETCDInstance) {
			o.Spec.Storage = &etcdaas.StorageSpec{Size: ptr.To(resource.MustParse("1Gi"))}
		},
			func(o *etcdaas.ETCDInstance) { o.Spec.Storage.Size = ptr.To(resource.MustParse("2Gi")) }, []string{"FieldValueForbidden spec.storage"}},
		"same storage written differently": {func(o *etcdaas.ETCDInstance) {
			o.Spec.Storage = &etcdaas.StorageSpec{Size: ptr.To(resource.MustParse("1Gi"))}
		},
			func(o *etcdaas.ETCDInstance) { o.Spec.Storage.Size = ptr.To(resource.MustParse("1024Mi")) }, nil},
		"rename": {func(*etcdaas.ETCDInstance) {}, func(o *etcdaas.ETCDInstance) { o.Name = "other" }, []string{"FieldValueInvalid metadata.name"}},
	} {
		t.Run(name, func(t *testing.T) {
			oldObj := validInstance()
			tc.old(oldObj)
			newObj := oldObj.DeepCopy()
			tc.new(newObj)
			expect(t, ValidateETCDInstanceUpdate(newObj, oldObj), tc.want...)
		})
	}
}

func TestValidateETCDInstanceStatusUpdate(t *testing.T) {
	condition := metav1.Condition{Type: etcdaas.ConditionAvailable, Status: metav1.ConditionTrue, Reason: "MembersReady", LastTransitionTime: metav1.Unix(1700000000, 0)}
	for name, tc := range map[string]struct {
		status etcdaas.ETCDInstanceStatus
		want   []string
	}{
		"valid": {etcdaas.ETCDInstanceStatus{Phase: etcdaas.PhaseRunning, Replicas: 3, ReadyReplicas: 3, Selector: etcdaas.MemberSelector("my-etcd"),
			Members: []etcdaas.MemberStatus{{Name: "my-etcd-0"}, {Name: "my-etcd-1"}}, Conditions: []metav1.Condition{condition}}, nil},
		"negative replicas":          {etcdaas.ETCDInstanceStatus{Replicas: -1}, []string{"FieldValueInvalid status.replicas", "FieldValueInvalid status.readyReplicas"}},
		"ready above replicas":       {etcdaas.ETCDInstanceStatus{Replicas: 1, ReadyReplicas: 2}, []string{"FieldValueInvalid status.readyReplicas"}},
		"negative observed":          {etcdaas.ETCDInstanceStatus{ObservedGeneration: -1}, []string{"FieldValueInvalid status.observedGeneration"}},
		"unknown phase":              {etcdaas.ETCDInstanceStatus{Phase: "Sleeping"}, []string{"FieldValueNotSupported status.phase"}},
		"bad selector":               {etcdaas.ETCDInstanceStatus{Selector: "a in (b"}, []string{"FieldValueInvalid status.selector"}},
		"duplicate member":           {etcdaas.ETCDInstanceStatus{Members: []etcdaas.MemberStatus{{Name: "a"}, {Name: "a"}}}, []string{"FieldValueDuplicate status.members[1].name"}},
		"unnamed member":             {etcdaas.ETCDInstanceStatus{Members: []etcdaas.MemberStatus{{ID: "1"}}}, []string{"FieldValueRequired status.members[0].name"}},
		"condition without a reason": {etcdaas.ETCDInstanceStatus{Conditions: []metav1.Condition{{Type: "Available", Status: "True", LastTransitionTime: metav1.Unix(1, 0)}}}, []string{"FieldValueRequired status.conditions[0].reason"}},
	} {
		t.Run(name, func(t *testing.T) {
			oldObj := validInstance()
			newObj := oldObj.DeepCopy()
			newObj.Status = tc.status
			expect(t, ValidateETCDInstanceStatusUpdate(newObj, oldObj), tc.want...)
		})
	}
}

func TestValidateScale(t *testing.T) {
	scale := func(replicas int32) *autoscalingv1.Scale {
		return &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "my-etcd", Namespace: "default"}, Spec: autoscalingv1.ScaleSpec{Replicas: replicas}}
	}
	expect(t, ValidateScale(scale(5)))
	expect(t, ValidateScale(scale(10)), "FieldValueInvalid spec.replicas")
	expect(t, ValidateScale(scale(0)), "FieldValueInvalid spec.replicas")
}

func TestForVersionNamesTheFieldTheClientSent(t *testing.T) {
	oldObj := validInstance()
	newObj := oldObj.DeepCopy()
	newObj.Spec.TLS = &etcdaas.TLSSpec{Enabled: true}
	newObj.Spec.Replicas = 10
	errs := ValidateETCDInstanceUpdate(newObj, oldObj)
	expect(t, ForVersion(errs, "v1alpha1"), "FieldValueInvalid spec.replicas", "FieldValueInvalid spec.with_tls_bundle")
	expect(t, ForVersion(errs, "v1beta1"), "FieldValueInvalid spec.replicas", "FieldValueInvalid spec.tls")
	if errs[1].Field != "spec.tls" {
		t.Fatalf("ForVersion modified its input: %s", errs[1].Field)
	}
}

func TestReplicasWarnings(t *testing.T) {
	path := field.NewPath("spec", "replicas")
	for replicas, want := range map[int32]bool{1: false, 2: true, 3: false, 4: true, 9: false} {
		if got := len(ReplicasWarnings(replicas, path)) > 0; got != want {
			t.Errorf("replicas %d: warning %v, want %v", replicas, got, want)
		}
	}
}
