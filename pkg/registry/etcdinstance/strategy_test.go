package etcdinstance

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/install"
)

func testScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	install.Install(s)
	return s
}

func ctxFor(version string) context.Context {
	return genericapirequest.WithRequestInfo(context.Background(), &genericapirequest.RequestInfo{
		IsResourceRequest: true, APIGroup: etcdaas.GroupName, APIVersion: version, Resource: "etcdinstances",
	})
}

func instance() *etcdaas.ETCDInstance {
	return &etcdaas.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns", ResourceVersion: "1", Generation: 1},
		Spec:       etcdaas.ETCDInstanceSpec{Replicas: 3, Version: "3.7"},
	}
}

func TestPrepareForCreate(t *testing.T) {
	s := NewStrategy(testScheme())
	obj := instance()
	obj.Spec.Version = ""
	obj.Generation = 7
	obj.Status = etcdaas.ETCDInstanceStatus{Phase: etcdaas.PhaseRunning, Replicas: 3}
	s.PrepareForCreate(ctxFor("v1alpha1"), obj)
	if obj.Generation != 1 || obj.Spec.Version != etcdaas.DefaultVersion || obj.Status.Phase != "" || obj.Status.Replicas != 0 {
		t.Errorf("after PrepareForCreate: generation %d version %q status %+v", obj.Generation, obj.Spec.Version, obj.Status)
	}
	if errs := s.Validate(ctxFor("v1beta1"), obj); len(errs) != 0 {
		t.Errorf("valid object: %v", errs)
	}
}

func TestPrepareForUpdate(t *testing.T) {
	s := NewStrategy(testScheme())
	old := instance()
	old.Status = etcdaas.ETCDInstanceStatus{Phase: etcdaas.PhaseRunning, Replicas: 3}

	metaOnly := old.DeepCopy()
	metaOnly.Labels = map[string]string{"a": "b"}
	metaOnly.Status = etcdaas.ETCDInstanceStatus{}
	s.PrepareForUpdate(ctxFor("v1beta1"), metaOnly, old)
	if metaOnly.Generation != 1 || metaOnly.Status.Phase != etcdaas.PhaseRunning {
		t.Errorf("metadata-only update: generation %d status %+v", metaOnly.Generation, metaOnly.Status)
	}

	spec := old.DeepCopy()
	spec.Spec.Replicas = 5
	s.PrepareForUpdate(ctxFor("v1beta1"), spec, old)
	if spec.Generation != 2 {
		t.Errorf("spec update: generation %d, want 2", spec.Generation)
	}

	// A v1alpha1 client without the preserved-fields annotation keeps version and storage.
	size := resource.MustParse("1Gi")
	old.Spec.Storage = &etcdaas.StorageSpec{VolumeSize: &size}
	old.Spec.Version = "3.6"
	alpha := old.DeepCopy()
	alpha.Spec.Version = ""
	alpha.Spec.Storage = nil
	s.PrepareForUpdate(ctxFor("v1alpha1"), alpha, old)
	if alpha.Spec.Version != "3.6" || alpha.Spec.Storage == nil || alpha.Generation != 1 {
		t.Errorf("v1alpha1 update: %+v generation %d", alpha.Spec, alpha.Generation)
	}
	// A v1beta1 client removing storage is refused by validation, not silently undone.
	beta := old.DeepCopy()
	beta.Spec.Storage = nil
	s.PrepareForUpdate(ctxFor("v1beta1"), beta, old)
	if errs := s.ValidateUpdate(ctxFor("v1beta1"), beta, old); len(errs) == 0 {
		t.Error("removing storage through v1beta1 passed validation")
	}
}

func TestValidationPathsPerVersion(t *testing.T) {
	s := NewStrategy(testScheme())
	old := instance()
	updated := old.DeepCopy()
	updated.Spec.TLS = &etcdaas.TLSSpec{Enabled: true}
	for version, want := range map[string]string{"v1alpha1": "spec.with_tls_bundle", "v1beta1": "spec.tls.enabled"} {
		errs := s.ValidateUpdate(ctxFor(version), updated, old)
		if len(errs) != 1 || errs[0].Field != want {
			t.Errorf("%s: errors %v, want one on %s", version, errs, want)
		}
	}
	bad := instance()
	bad.Spec.Replicas = 10
	if errs := s.Validate(ctxFor("v1alpha1"), bad); len(errs) != 1 || errs[0].Field != "spec.replicas" {
		t.Errorf("replicas 10: %v", errs)
	}
}

func TestWarnings(t *testing.T) {
	s := NewStrategy(testScheme())
	even := instance()
	even.Spec.Replicas = 4
	if w := s.WarningsOnCreate(ctxFor("v1beta1"), even); len(w) != 1 || !strings.HasPrefix(w[0], "spec.replicas") {
		t.Errorf("create with 4 replicas: warnings %q", w)
	}
	if w := s.WarningsOnCreate(ctxFor("v1beta1"), instance()); len(w) != 0 {
		t.Errorf("create with 3 replicas: warnings %q", w)
	}
	if w := s.WarningsOnUpdate(ctxFor("v1beta1"), even, even.DeepCopy()); len(w) != 0 {
		t.Errorf("update keeping 4 replicas: warnings %q", w)
	}
	if w := s.WarningsOnUpdate(ctxFor("v1beta1"), even, instance()); len(w) != 1 {
		t.Errorf("update 3 -> 4 replicas: warnings %q", w)
	}
}

// TestResourcesWarning: a server whose members run in-process warns that spec.resources is
// kept but not applied, on a create that sets it and an update that changes it; a server of
// another backend does not.
func TestResourcesWarning(t *testing.T) {
	inProcess := NewStrategy(testScheme())
	inProcess.Versions = VersionPolicy{Supported: []string{"3.7"}, Reason: "standalone, local backend", InProcess: true}
	sized := instance()
	sized.Spec.Resources = &etcdaas.MemberResources{Requests: map[string]resource.Quantity{"memory": resource.MustParse("1Gi")}}
	want := "spec.resources: kept but not applied: this server runs its etcd members inside its own process (standalone, local backend)"
	if w := inProcess.WarningsOnCreate(ctxFor("v1beta1"), sized); !slices.Equal(w, []string{want}) {
		t.Errorf("create with resources: warnings %q", w)
	}
	if w := inProcess.WarningsOnCreate(ctxFor("v1beta1"), instance()); len(w) != 0 {
		t.Errorf("create without resources: warnings %q", w)
	}
	if w := inProcess.WarningsOnUpdate(ctxFor("v1beta1"), sized, instance()); !slices.Equal(w, []string{want}) {
		t.Errorf("update setting resources: warnings %q", w)
	}
	same := sized.DeepCopy()
	same.Spec.Replicas = 5
	if w := inProcess.WarningsOnUpdate(ctxFor("v1beta1"), same, sized); len(w) != 0 {
		t.Errorf("update keeping resources: warnings %q", w)
	}
	if w := NewStrategy(testScheme()).WarningsOnCreate(ctxFor("v1beta1"), sized); len(w) != 0 {
		t.Errorf("create with resources, kubernetes backend: warnings %q", w)
	}
}

func TestStatusStrategy(t *testing.T) {
	s := NewStatusStrategy(testScheme())
	old := instance()
	old.Finalizers = []string{"etcdaas.dev/cleanup"}
	updated := old.DeepCopy()
	updated.Spec.Replicas = 9
	updated.Generation = 5
	updated.Finalizers = nil
	updated.Labels = map[string]string{"seen": "yes"}
	updated.Status = etcdaas.ETCDInstanceStatus{Phase: etcdaas.PhaseRunning, Replicas: 3, ReadyReplicas: 2}
	s.PrepareForUpdate(ctxFor("v1beta1"), updated, old)
	if updated.Spec.Replicas != 3 || updated.Generation != 1 || len(updated.Finalizers) != 1 ||
		updated.Labels["seen"] != "yes" || updated.Status.ReadyReplicas != 2 {
		t.Errorf("after status PrepareForUpdate: %+v", updated)
	}
	if errs := s.ValidateUpdate(ctxFor("v1beta1"), updated, old); len(errs) != 0 {
		t.Errorf("valid status: %v", errs)
	}
	updated.Status.Phase = "running"
	if errs := s.ValidateUpdate(ctxFor("v1alpha1"), updated, old); len(errs) != 1 || errs[0].Field != "status.state" {
		t.Errorf("unknown phase through v1alpha1: %v", errs)
	}
}

func TestResetFields(t *testing.T) {
	for name, fields := range map[string]map[fieldpath.APIVersion]*fieldpath.Set{
		"main":   NewStrategy(testScheme()).GetResetFields(),
		"status": NewStatusStrategy(testScheme()).GetResetFields(),
	} {
		for _, v := range []fieldpath.APIVersion{"etcdaas.dev/v1beta1", "etcdaas.dev/v1alpha1"} {
			set, ok := fields[v]
			if !ok {
				t.Errorf("%s: no reset fields for %s", name, v)
				continue
			}
			want := fieldpath.MakePathOrDie("status")
			if name == "status" {
				want = fieldpath.MakePathOrDie("spec")
			}
			if !set.Has(want) {
				t.Errorf("%s %s: reset fields %v lack %v", name, v, set, want)
			}
			if name == "main" {
				for _, key := range requestAnnotations {
					if p := fieldpath.MakePathOrDie("metadata", "annotations", key); !set.Has(p) {
						t.Errorf("main %s: reset fields %v lack %v, which only a subresource sets", v, set, p)
					}
				}
			}
		}
	}
}

func TestGetAttrs(t *testing.T) {
	obj := instance()
	obj.Labels = map[string]string{"team": "a"}
	labels, fields, err := GetAttrs(obj)
	if err != nil {
		t.Fatal(err)
	}
	if labels["team"] != "a" || fields["metadata.name"] != "db" || fields["metadata.namespace"] != "ns" {
		t.Errorf("labels %v fields %v", labels, fields)
	}
	if _, _, err := GetAttrs(&metav1.Status{}); err == nil {
		t.Error("GetAttrs accepted a Status")
	}
}

func TestTable(t *testing.T) {
	obj := instance()
	obj.CreationTimestamp = metav1.Now()
	obj.Spec.TLS = &etcdaas.TLSSpec{Enabled: true}
	obj.Status = etcdaas.ETCDInstanceStatus{Phase: etcdaas.PhaseRunning, Replicas: 3, ReadyReplicas: 2,
		Members: []etcdaas.MemberStatus{{Name: "db-0"}, {Name: "db-1", Leader: true}, {Name: "db-2"}}}
	table, err := TableConvertor{}.ConvertToTable(context.Background(), &etcdaas.ETCDInstanceList{
		ListMeta: metav1.ListMeta{ResourceVersion: "42"},
		Items:    []etcdaas.ETCDInstance{*obj, *instance()},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(table.ColumnDefinitions) != 9 || table.ResourceVersion != "42" || len(table.Rows) != 2 {
		t.Fatalf("table %+v", table)
	}
	cells := table.Rows[0].Cells
	if cells[0] != "db" || cells[1] != int64(3) || cells[2] != "2/3" || cells[3] != "Running" || cells[4] != "3.7" {
		t.Errorf("row %v", cells)
	}
	if cells[6] != true || cells[7] != "db-0,db-1,db-2" || cells[8] != "db-1" {
		t.Errorf("wide cells %v", cells[6:])
	}
	for i, c := range table.ColumnDefinitions {
		if wide := i >= 6; wide != (c.Priority == 1) {
			t.Errorf("column %s has priority %d", c.Name, c.Priority)
		}
	}
	if table.Rows[1].Cells[3] != "Pending" || table.Rows[1].Cells[5] != "<unknown>" || table.Rows[1].Cells[8] != "<none>" {
		t.Errorf("row without status %v", table.Rows[1].Cells)
	}
	noHeaders, err := TableConvertor{}.ConvertToTable(context.Background(), obj, &metav1.TableOptions{NoHeaders: true})
	if err != nil || len(noHeaders.ColumnDefinitions) != 0 || len(noHeaders.Rows) != 1 {
		t.Errorf("no headers: %v %+v", err, noHeaders)
	}
	if _, err := (TableConvertor{}).ConvertToTable(context.Background(), &metav1.Status{}, nil); err == nil {
		t.Error("table of a Status did not fail")
	}
}

func TestScaleFromInstance(t *testing.T) {
	obj := instance()
	obj.UID = "u"
	obj.Status.Replicas = 2
	scale := scaleFromInstance(obj)
	if scale.Spec.Replicas != 3 || scale.Status.Replicas != 2 || scale.Status.Selector != etcdaas.MemberSelector("db") ||
		scale.UID != "u" || scale.ResourceVersion != "1" || scale.Namespace != "ns" {
		t.Errorf("scale %+v", scale)
	}
	obj.Status.Selector = "app.kubernetes.io/instance=db"
	if got := scaleFromInstance(obj).Status.Selector; got != obj.Status.Selector {
		t.Errorf("selector %q, want the status one", got)
	}
}

// TestScaleTable checks that `kubectl get etcd NAME --subresource=scale` prints the columns
// kube-apiserver prints for the scale of a Deployment or a custom resource.
func TestScaleTable(t *testing.T) {
	obj := instance()
	obj.CreationTimestamp = metav1.NewTime(time.Now().Add(-90 * time.Minute))
	obj.Status.Replicas = 2
	table, err := (&ScaleREST{}).ConvertToTable(context.Background(), scaleFromInstance(obj), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range table.ColumnDefinitions {
		names = append(names, c.Name)
	}
	if !slices.Equal(names, []string{"Name", "Desired", "Available", "Age"}) {
		t.Errorf("columns %v, want Name Desired Available Age", names)
	}
	if len(table.Rows) != 1 || table.ResourceVersion != "1" {
		t.Fatalf("table %+v", table)
	}
	if cells := table.Rows[0].Cells; !slices.Equal(cells, []interface{}{"db", int64(3), int64(2), "90m"}) {
		t.Errorf("row %v, want [db 3 2 90m]", cells)
	}
	noHeaders, err := (&ScaleREST{}).ConvertToTable(context.Background(), scaleFromInstance(obj), &metav1.TableOptions{NoHeaders: true})
	if err != nil || len(noHeaders.ColumnDefinitions) != 0 || len(noHeaders.Rows) != 1 {
		t.Errorf("no headers: %v %+v", err, noHeaders)
	}
	if _, err := (&ScaleREST{}).ConvertToTable(context.Background(), obj, nil); err == nil {
		t.Error("a scale table of an ETCDInstance did not fail")
	}
}

func TestGeneratedNamesFitTheNameLimit(t *testing.T) {
	s := NewStrategy(testScheme())
	for _, base := range []string{"db-", strings.Repeat("g", 44) + "-", strings.Repeat("g", 48) + "-"} {
		obj := instance()
		obj.GenerateName = base
		obj.Name = s.GenerateName(base)
		if errs := s.Validate(ctxFor("v1beta1"), obj); len(errs) != 0 {
			t.Errorf("generateName %q (%d characters): the generated name %q is refused: %v", base, len(base), obj.Name, errs)
		}
		if keep := min(len(base), 45); !strings.HasPrefix(obj.Name, base[:keep]) || len(obj.Name) != keep+5 {
			t.Errorf("generateName %q: name %q, want its first %d characters and 5 random ones", base, obj.Name, keep)
		}
	}
}

// TestFractionalBytesWarning: memory and ephemeral-storage of a fraction of a byte (such as
// "memory: 1.5", 1500m bytes, where 1.5Gi was meant) are warned about as kube-apiserver warns
// about a container's, on either backend, when a create or an update sets them.
func TestFractionalBytesWarning(t *testing.T) {
	s := NewStrategy(testScheme())
	fractional := instance()
	fractional.Spec.Resources = &etcdaas.MemberResources{
		Requests: map[string]resource.Quantity{"memory": resource.MustParse("1.5"), "cpu": resource.MustParse("0.5")},
		Limits:   map[string]resource.Quantity{"ephemeral-storage": resource.MustParse("0.5"), "memory": resource.MustParse("2Gi")},
	}
	want := []string{
		`spec.resources.requests[memory]: fractional byte value "1500m" is invalid, must be an integer`,
		`spec.resources.limits[ephemeral-storage]: fractional byte value "500m" is invalid, must be an integer`,
	}
	if w := s.WarningsOnCreate(ctxFor("v1beta1"), fractional); !slices.Equal(w, want) {
		t.Errorf("create: warnings %q, want %q", w, want)
	}
	if w := s.WarningsOnUpdate(ctxFor("v1alpha1"), fractional, instance()); !slices.Equal(w, want) {
		t.Errorf("update setting them: warnings %q, want %q", w, want)
	}
	same := fractional.DeepCopy()
	same.Spec.Replicas = 5
	if w := s.WarningsOnUpdate(ctxFor("v1beta1"), same, fractional); len(w) != 0 {
		t.Errorf("update keeping them: warnings %q", w)
	}
	whole := instance()
	whole.Spec.Resources = &etcdaas.MemberResources{Requests: map[string]resource.Quantity{"memory": resource.MustParse("1.5Gi"), "cpu": resource.MustParse("1m")}}
	if w := s.WarningsOnCreate(ctxFor("v1beta1"), whole); len(w) != 0 {
		t.Errorf("whole bytes: warnings %q", w)
	}
}
