package integration

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1alpha1"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	typedv1alpha1 "github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned/typed/etcdaas/v1alpha1"
	typedv1beta1 "github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned/typed/etcdaas/v1beta1"
)

func TestDiscovery(t *testing.T) {
	dc, err := discovery.NewDiscoveryClientForConfig(shared.Config())
	if err != nil {
		t.Fatal(err)
	}
	checkDiscoveredGroup(t, dc)
	for _, gv := range []schema.GroupVersion{v1beta1.SchemeGroupVersion, v1alpha1.SchemeGroupVersion} {
		t.Run(gv.Version, func(t *testing.T) {
			list, err := dc.ServerResourcesForGroupVersion(gv.String())
			if err != nil {
				t.Fatal(err)
			}
			byName := map[string]metav1.APIResource{}
			for _, r := range list.APIResources {
				byName[r.Name] = r
			}
			main, ok := byName["etcdinstances"]
			if !ok {
				t.Fatalf("etcdinstances missing: %+v", list.APIResources)
			}
			checkDiscoveredETCDInstances(t, main)
			status, ok := byName["etcdinstances/status"]
			if !ok || status.Kind != "ETCDInstance" || !slices.Contains(status.Verbs, "update") || !slices.Contains(status.Verbs, "patch") {
				t.Errorf("etcdinstances/status = %+v (present %v)", status, ok)
			}
			checkDiscoveredSubresources(t, gv, byName)
			scale, ok := byName["etcdinstances/scale"]
			if !ok {
				t.Fatalf("etcdinstances/scale missing")
			}
			if scale.Group != "autoscaling" || scale.Version != "v1" || scale.Kind != "Scale" {
				t.Errorf("etcdinstances/scale is %s/%s %s, want autoscaling/v1 Scale", scale.Group, scale.Version, scale.Kind)
			}
			for _, verb := range []string{"get", "patch", "update"} {
				if !slices.Contains(scale.Verbs, verb) {
					t.Errorf("scale verbs %v lack %s", scale.Verbs, verb)
				}
			}
		})
	}
}

// checkDiscoveredGroup checks that discovery lists the etcdaas.dev group with its two
// versions, v1beta1 preferred.
func checkDiscoveredGroup(t *testing.T, dc *discovery.DiscoveryClient) {
	t.Helper()
	groups, err := dc.ServerGroups()
	if err != nil {
		t.Fatal(err)
	}
	var group *metav1.APIGroup
	for i := range groups.Groups {
		if groups.Groups[i].Name == etcdaas.GroupName {
			group = &groups.Groups[i]
		}
	}
	if group == nil {
		t.Fatalf("group %s not discovered: %+v", etcdaas.GroupName, groups)
	}
	var versions []string
	for _, v := range group.Versions {
		versions = append(versions, v.Version)
	}
	if !slices.Equal(versions, []string{"v1beta1", "v1alpha1"}) {
		t.Errorf("versions = %v, want [v1beta1 v1alpha1]", versions)
	}
	if group.PreferredVersion.Version != "v1beta1" {
		t.Errorf("preferred version = %q, want v1beta1", group.PreferredVersion.Version)
	}
}

// checkDiscoveredETCDInstances checks the etcdinstances resource as discovered: namespaced,
// its names, categories and verbs.
func checkDiscoveredETCDInstances(t *testing.T, main metav1.APIResource) {
	t.Helper()
	if !main.Namespaced || main.Kind != "ETCDInstance" || main.SingularName != "etcdinstance" {
		t.Errorf("etcdinstances = %+v", main)
	}
	if !slices.Equal(main.ShortNames, []string{"etcd"}) {
		t.Errorf("short names = %v, want [etcd]", main.ShortNames)
	}
	if !slices.Equal(main.Categories, []string{"all", "etcdaas"}) {
		t.Errorf("categories = %v, want [all etcdaas]", main.Categories)
	}
	for _, verb := range []string{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"} {
		if !slices.Contains(main.Verbs, verb) {
			t.Errorf("etcdinstances verbs %v lack %s", main.Verbs, verb)
		}
	}
}

// checkDiscoveredSubresources checks the resources gv serves: v1alpha1 keeps the original
// subresources; those added since are v1beta1's, like every v1beta1-only field.
func checkDiscoveredSubresources(t *testing.T, gv schema.GroupVersion, byName map[string]metav1.APIResource) {
	t.Helper()
	var names []string
	for name := range byName {
		names = append(names, name)
	}
	slices.Sort(names)
	want := []string{"etcdinstances", "etcdinstances/backup", "etcdinstances/scale", "etcdinstances/status"}
	if gv == v1beta1.SchemeGroupVersion {
		want = []string{"etcdinstances", "etcdinstances/backup", "etcdinstances/backups", "etcdinstances/defrag",
			"etcdinstances/recover", "etcdinstances/restore", "etcdinstances/scale", "etcdinstances/status"}
		for _, post := range []string{"etcdinstances/defrag", "etcdinstances/recover", "etcdinstances/restore"} {
			if r := byName[post]; !slices.Equal(r.Verbs, []string{"create"}) {
				t.Errorf("%s verbs %v, want create only", post, r.Verbs)
			}
		}
	}
	if !slices.Equal(names, want) {
		t.Errorf("resources %v, want %v", names, want)
	}
}

func TestCRUDV1beta1(t *testing.T) {
	ctx := testContext(t)
	cs, warnings := clientsWithWarnings(t)
	ns := namespace(t)
	client := cs.EtcdaasV1beta1().ETCDInstances(ns)

	w, err := client.Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	created, err := client.Create(ctx, &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "crud"},
		Spec:       v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](4)},
		Status:     v1beta1.ETCDInstanceStatus{Phase: v1beta1.PhaseRunning, Replicas: 4},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := warnings.take(); len(got) != 1 || !strings.Contains(got[0], "spec.replicas") {
		t.Errorf("warnings on creating 4 replicas = %q, want one about spec.replicas", got)
	}
	if created.Generation != 1 || created.Spec.Version != etcdaas.DefaultVersion || created.Status.Phase != "" || created.Status.Replicas != 0 {
		t.Errorf("created: generation %d, version %q, status %+v; want 1, %q, empty", created.Generation, created.Spec.Version, created.Status, etcdaas.DefaultVersion)
	}

	defaulted, err := client.Create(ctx, &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "defaulted"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ptr.Deref(defaulted.Spec.Replicas, 0) != 3 {
		t.Errorf("v1beta1 default replicas = %v, want 3", defaulted.Spec.Replicas)
	}

	got, err := client.Get(ctx, "crud", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got.Spec.Replicas = ptr.To[int32](5)
	updated, err := client.Update(ctx, got, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if updated.Generation != 2 || *updated.Spec.Replicas != 5 {
		t.Errorf("after update: generation %d replicas %d, want 2, 5", updated.Generation, *updated.Spec.Replicas)
	}
	if got := warnings.take(); len(got) != 0 {
		t.Errorf("warnings on updating to 5 replicas = %q, want none", got)
	}

	checkCRUDLists(t, ctx, client)

	if err := client.Delete(ctx, "crud", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Get(ctx, "crud", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("get after delete: err = %v, want 404", err)
	}

	checkCRUDWatchEvents(t, w)
}

// checkCRUDLists checks TestCRUDV1beta1's lists: both instances, one by field selector, and
// 400 for a field selector on a field that is not supported.
func checkCRUDLists(t *testing.T, ctx context.Context, client typedv1beta1.ETCDInstanceInterface) {
	t.Helper()
	list, err := client.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 2 {
		t.Errorf("list has %d items, want 2", len(list.Items))
	}
	selected, err := client.List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", "crud").String()})
	if err != nil {
		t.Fatal(err)
	}
	if len(selected.Items) != 1 || selected.Items[0].Name != "crud" {
		t.Errorf("field selector metadata.name=crud returned %d items", len(selected.Items))
	}
	if _, err := client.List(ctx, metav1.ListOptions{FieldSelector: "spec.replicas=3"}); !apierrors.IsBadRequest(err) {
		t.Errorf("unsupported field selector: err = %v, want 400", err)
	}
}

// checkCRUDWatchEvents checks the events TestCRUDV1beta1's watch saw: both creations, the
// update, the deletion, in order.
func checkCRUDWatchEvents(t *testing.T, w watch.Interface) {
	t.Helper()
	expect := []struct {
		typ  watch.EventType
		name string
	}{{watch.Added, "crud"}, {watch.Added, "defaulted"}, {watch.Modified, "crud"}, {watch.Deleted, "crud"}}
	for _, e := range expect {
		select {
		case ev := <-w.ResultChan():
			obj, ok := ev.Object.(*v1beta1.ETCDInstance)
			if !ok || ev.Type != e.typ || obj.Name != e.name {
				t.Errorf("watch event %s %T, want %s %s", ev.Type, ev.Object, e.typ, e.name)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no watch event %s %s", e.typ, e.name)
		}
	}
}

func TestCRUDV1alpha1(t *testing.T) {
	ctx := testContext(t)
	cs, _ := clients(t)
	ns := namespace(t)
	client := cs.EtcdaasV1alpha1().ETCDInstances(ns)

	w, err := client.Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	created, err := client.Create(ctx, &v1alpha1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "old-client"},
		Spec:       v1alpha1.ETCDInstanceSpec{WithTLSBundle: true},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ptr.Deref(created.Spec.Replicas, 0) != 1 || !created.Spec.WithTLSBundle {
		t.Errorf("created %+v, want replicas 1 (v1alpha1 default) and with_tls_bundle", created.Spec)
	}
	if _, leaked := created.Annotations[etcdaas.PreservedFieldsAnnotation]; !leaked {
		t.Errorf("v1alpha1 object lacks the preserved-fields annotation carrying spec.version: %v", created.Annotations)
	}

	created.Spec.Replicas = ptr.To[int32](3)
	updated, err := client.Update(ctx, created, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *updated.Spec.Replicas != 3 || updated.Generation != 2 {
		t.Errorf("updated: replicas %d generation %d, want 3, 2", *updated.Spec.Replicas, updated.Generation)
	}
	list, err := client.List(ctx, metav1.ListOptions{FieldSelector: "metadata.namespace=" + ns})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 {
		t.Errorf("list has %d items, want 1", len(list.Items))
	}
	if err := client.Delete(ctx, "old-client", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []watch.EventType{watch.Added, watch.Modified, watch.Deleted} {
		select {
		case ev := <-w.ResultChan():
			if _, ok := ev.Object.(*v1alpha1.ETCDInstance); !ok || ev.Type != want {
				t.Errorf("watch event %s %T, want %s *v1alpha1.ETCDInstance", ev.Type, ev.Object, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no watch event %s", want)
		}
	}
}

func TestDynamicClient(t *testing.T) {
	ctx := testContext(t)
	_, dyn := clients(t)
	ns := namespace(t)
	for _, version := range []string{"v1alpha1", "v1beta1"} {
		t.Run(version, func(t *testing.T) {
			gvr := schema.GroupVersionResource{Group: etcdaas.GroupName, Version: version, Resource: "etcdinstances"}
			client := dyn.Resource(gvr).Namespace(ns)
			name := "dyn-" + version
			obj := &unstructured.Unstructured{Object: map[string]interface{}{
				"apiVersion": gvr.GroupVersion().String(),
				"kind":       "ETCDInstance",
				"metadata":   map[string]interface{}{"name": name},
				"spec":       map[string]interface{}{"replicas": int64(3)},
			}}
			created, err := client.Create(ctx, obj, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if created.GetAPIVersion() != gvr.GroupVersion().String() {
				t.Errorf("apiVersion = %s", created.GetAPIVersion())
			}
			if err := unstructured.SetNestedField(created.Object, int64(5), "spec", "replicas"); err != nil {
				t.Fatal(err)
			}
			updated, err := client.Update(ctx, created, metav1.UpdateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if r, _, _ := unstructured.NestedInt64(updated.Object, "spec", "replicas"); r != 5 {
				t.Errorf("replicas = %d, want 5", r)
			}
			list, err := client.List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name})
			if err != nil {
				t.Fatal(err)
			}
			if len(list.Items) != 1 {
				t.Errorf("list by name has %d items", len(list.Items))
			}
			if err := client.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestCrossVersionPreservation(t *testing.T) {
	ctx := testContext(t)
	cs, _ := clients(t)
	ns := namespace(t)
	v := &crossVersion{ctx: ctx, ns: ns,
		beta: cs.EtcdaasV1beta1().ETCDInstances(ns), alpha: cs.EtcdaasV1alpha1().ETCDInstances(ns)}
	t.Run("v1beta1 fields survive a v1alpha1 read-modify-write", v.betaFieldsSurviveAlphaUpdate)
	t.Run("an old client's update keeps restoreFrom", v.oldClientKeepsRestoreFrom)
	t.Run("v1alpha1 fields survive a v1beta1 read-modify-write", v.alphaFieldsSurviveBetaUpdate)
	t.Run("fields added through the annotation get v1beta1's defaults", v.annotationFieldsGetDefaults)
	t.Run("managedFields never show the annotation", v.managedFieldsHideAnnotation)
	t.Run("an annotation that is not the server's JSON is refused", v.badAnnotationRefused)
}

// crossVersion is one namespace's ETCDInstances through the clients of both versions, for
// TestCrossVersionPreservation's subtests (which run in order: later ones read earlier ones'
// instances).
type crossVersion struct {
	ctx   context.Context
	ns    string
	beta  typedv1beta1.ETCDInstanceInterface
	alpha typedv1alpha1.ETCDInstanceInterface
}

// betaFieldsSurviveAlphaUpdate checks that a v1alpha1 read-modify-write, with or without the
// annotation, keeps the fields only v1beta1 expresses.
func (v *crossVersion) betaFieldsSurviveAlphaUpdate(t *testing.T) {
	ctx, beta, alpha := v.ctx, v.beta, v.alpha
	size := resource.MustParse("2Gi")
	created, err := beta.Create(ctx, &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "beta-first", Labels: map[string]string{"team": "a"}},
		Spec: v1beta1.ETCDInstanceSpec{
			Replicas: ptr.To[int32](3),
			Version:  "3.6",
			TLS:      &v1beta1.TLSSpec{Enabled: true},
			Storage:  &v1beta1.StorageSpec{VolumeSize: &size, StorageClassName: ptr.To("fast")},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	old, err := alpha.Get(ctx, "beta-first", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !old.Spec.WithTLSBundle || *old.Spec.Replicas != 3 {
		t.Errorf("v1alpha1 view %+v", old.Spec)
	}
	old.Spec.Replicas = ptr.To[int32](5)
	if _, err := alpha.Update(ctx, old, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	after, err := beta.Get(ctx, "beta-first", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *after.Spec.Replicas != 5 || after.Spec.Version != "3.6" || after.Spec.TLS == nil || !after.Spec.TLS.Enabled ||
		after.Spec.Storage == nil || after.Spec.Storage.VolumeSize.Cmp(size) != 0 || ptr.Deref(after.Spec.Storage.StorageClassName, "") != "fast" {
		t.Errorf("v1beta1 view after v1alpha1 update lost fields: %+v (storage %+v)", after.Spec, after.Spec.Storage)
	}
	if after.Labels["team"] != "a" || after.Generation != created.Generation+1 {
		t.Errorf("labels %v generation %d", after.Labels, after.Generation)
	}
	if _, ok := after.Annotations[etcdaas.PreservedFieldsAnnotation]; ok {
		t.Errorf("v1beta1 view shows the preserved-fields annotation: %v", after.Annotations)
	}

	// An old client that builds the object from scratch (no annotation) keeps version and
	// storage too: v1alpha1 cannot express them.
	fresh, err := alpha.Get(ctx, "beta-first", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fresh.Annotations = nil
	fresh.Spec.Replicas = ptr.To[int32](3)
	if _, err := alpha.Update(ctx, fresh, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	after, err = beta.Get(ctx, "beta-first", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *after.Spec.Replicas != 3 || after.Spec.Version != "3.6" || after.Spec.Storage == nil {
		t.Errorf("v1alpha1 update without the annotation lost fields: %+v", after.Spec)
	}
}

// oldClientKeepsRestoreFrom checks that a v1alpha1 update without the annotation keeps the
// immutable restoreFrom.
func (v *crossVersion) oldClientKeepsRestoreFrom(t *testing.T) {
	ctx, beta, alpha := v.ctx, v.beta, v.alpha
	// restoreFrom is immutable and v1alpha1 cannot express it: an update that does not
	// carry the annotation cannot mean to drop it, and must not fail over it.
	restoreFrom := &v1beta1.RestoreSource{Instance: "beta-first", Key: "20261129T030512.123Z-r4711.db"}
	if _, err := beta.Create(ctx, &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "restored"},
		Spec:       v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](1), RestoreFrom: restoreFrom},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	fresh, err := alpha.Get(ctx, "restored", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fresh.Annotations = nil
	fresh.Spec.Replicas = ptr.To[int32](3)
	if _, err := alpha.Update(ctx, fresh, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("v1alpha1 update without the annotation of an instance restored from a backup: %v", err)
	}
	after, err := beta.Get(ctx, "restored", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *after.Spec.Replicas != 3 || after.Spec.RestoreFrom == nil || *after.Spec.RestoreFrom != *restoreFrom {
		t.Errorf("after a v1alpha1 update without the annotation: replicas %d, restoreFrom %+v; want 3, %+v", *after.Spec.Replicas, after.Spec.RestoreFrom, restoreFrom)
	}
}

// alphaFieldsSurviveBetaUpdate checks that a v1beta1 read-modify-write keeps v1alpha1's
// status.
func (v *crossVersion) alphaFieldsSurviveBetaUpdate(t *testing.T) {
	ctx, beta, alpha := v.ctx, v.beta, v.alpha
	if _, err := alpha.Create(ctx, &v1alpha1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "alpha-first"},
		Spec:       v1alpha1.ETCDInstanceSpec{Replicas: ptr.To[int32](1), WithTLSBundle: true},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	old, err := alpha.Get(ctx, "alpha-first", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	old.Status = v1alpha1.ETCDInstanceStatus{State: v1alpha1.StateRunning, Message: "deployment successful"}
	if _, err := alpha.UpdateStatus(ctx, old, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	current, err := beta.Get(ctx, "alpha-first", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if current.Status.Phase != v1beta1.PhaseRunning {
		t.Errorf("v1beta1 phase = %q, want Running", current.Status.Phase)
	}
	current.Spec.Replicas = ptr.To[int32](3)
	if _, err := beta.Update(ctx, current, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	after, err := alpha.Get(ctx, "alpha-first", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *after.Spec.Replicas != 3 || !after.Spec.WithTLSBundle ||
		after.Status.State != v1alpha1.StateRunning || after.Status.Message != "deployment successful" {
		t.Errorf("v1alpha1 view after v1beta1 update: spec %+v status %+v", after.Spec, after.Status)
	}
}

// annotationFieldsGetDefaults checks that spec.backup added through the annotation gets
// v1beta1's defaults.
func (v *crossVersion) annotationFieldsGetDefaults(t *testing.T) {
	ctx, ns, beta, alpha := v.ctx, v.ns, v.beta, v.alpha
	if _, err := alpha.Create(ctx, &v1alpha1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "backup-added"},
		Spec:       v1alpha1.ETCDInstanceSpec{Replicas: ptr.To[int32](1)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// What a v1beta1 client would send as spec.backup, without keep.
	value := `{"spec":{"version":"3.7","backup":{"schedule":"@daily","destination":{"local":{}}}}}`
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{etcdaas.PreservedFieldsAnnotation: value}}})
	if err != nil {
		t.Fatal(err)
	}
	path := "/apis/etcdaas.dev/v1alpha1/namespaces/" + ns + "/etcdinstances/backup-added"
	if res := do(t, http.MethodPatch, path, patch, "Content-Type", "application/merge-patch+json"); res.code != http.StatusOK {
		t.Fatalf("adding spec.backup through the annotation: %d %s, want 200", res.code, res.body)
	}
	after, err := beta.Get(ctx, "backup-added", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after.Spec.Backup == nil || ptr.Deref(after.Spec.Backup.Keep, 0) != v1beta1.DefaultBackupKeep {
		t.Errorf("spec.backup after adding it through the annotation = %+v, want keep defaulted to %d", after.Spec.Backup, v1beta1.DefaultBackupKeep)
	}
}

// managedFieldsHideAnnotation checks that no managedFields entry shows the annotation.
func (v *crossVersion) managedFieldsHideAnnotation(t *testing.T) {
	ctx, beta, alpha := v.ctx, v.beta, v.alpha
	// A v1alpha1 object exported with its annotation and created again (in another
	// namespace, another cluster), and a v1alpha1 status writer that sends the annotation
	// back changed: neither may leave the annotation, which is never stored, in the
	// managedFields that v1beta1 clients read.
	source, err := alpha.Get(ctx, "beta-first", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := source.Annotations[etcdaas.PreservedFieldsAnnotation]; !ok {
		t.Fatalf("v1alpha1 view of beta-first has no %s annotation: %v", etcdaas.PreservedFieldsAnnotation, source.Annotations)
	}
	copied := &v1alpha1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "copied", Annotations: source.Annotations},
		Spec:       source.Spec,
	}
	noOwner := func(after *v1beta1.ETCDInstance) {
		t.Helper()
		for _, entry := range after.ManagedFields {
			if entry.FieldsV1 != nil && strings.Contains(string(entry.FieldsV1.Raw), etcdaas.PreservedFieldsAnnotation) {
				t.Errorf("managedFields entry of %s (%s %s) shows the annotation: %s", entry.Manager, entry.APIVersion, entry.Subresource, entry.FieldsV1.Raw)
			}
		}
	}
	if _, err := alpha.Create(ctx, copied, metav1.CreateOptions{FieldManager: "exporter"}); err != nil {
		t.Fatal(err)
	}
	created, err := beta.Get(ctx, "copied", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	noOwner(created)
	current, err := alpha.Get(ctx, "copied", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	current.Annotations[etcdaas.PreservedFieldsAnnotation] = `{"spec":{"version":"3.6"},"status":{"replicas":1}}`
	current.Status = v1alpha1.ETCDInstanceStatus{State: v1alpha1.StateRunning}
	if _, err := alpha.UpdateStatus(ctx, current, metav1.UpdateOptions{FieldManager: "old-controller"}); err != nil {
		t.Fatal(err)
	}
	after, err := beta.Get(ctx, "copied", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	noOwner(after)
	if after.Spec.Version != "3.6" || after.Status.Replicas != 1 || after.Status.Phase != v1beta1.PhaseRunning {
		t.Errorf("copied: version %q, status %+v; want 3.6, replicas 1, Running", after.Spec.Version, after.Status)
	}
}

// badAnnotationRefused checks that an annotation that is not the server's JSON is refused
// with 422 and changes nothing.
func (v *crossVersion) badAnnotationRefused(t *testing.T) {
	ctx, ns, beta := v.ctx, v.ns, v.beta
	backup := &v1beta1.BackupSpec{Schedule: "@daily", Destination: v1beta1.BackupDestination{Local: &v1beta1.LocalDestination{}}}
	if _, err := beta.Create(ctx, &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "annotated"},
		Spec:       v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](3), Backup: backup},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	path := "/apis/etcdaas.dev/v1alpha1/namespaces/" + ns + "/etcdinstances/annotated"
	// A misspelled field, a field in the wrong case, a field given twice: none is what the
	// server wrote, and taking them would drop the backup schedule without a word.
	for _, value := range []string{
		`{"spec":{"bakup":{"schedule":"@hourly","destination":{"local":{}}}}}`,
		`{"spec":{"Backup":{"schedule":"@hourly","destination":{"local":{}}}}}`,
		`{"spec":{"backup":{"schedule":"@hourly","destination":{"local":{}}},"backup":null}}`,
	} {
		patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{etcdaas.PreservedFieldsAnnotation: value}}})
		if err != nil {
			t.Fatal(err)
		}
		res := do(t, http.MethodPatch, path, patch, "Content-Type", "application/merge-patch+json")
		if res.code != http.StatusUnprocessableEntity || !strings.Contains(string(res.body), etcdaas.PreservedFieldsAnnotation) {
			t.Errorf("annotation %s: %d %s, want 422 naming the annotation", value, res.code, res.body)
		}
		after, err := beta.Get(ctx, "annotated", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if after.Spec.Backup == nil || after.Spec.Backup.Schedule != "@daily" {
			t.Errorf("annotation %s changed spec.backup to %+v", value, after.Spec.Backup)
		}
	}
}

func TestStatusSpecSeparation(t *testing.T) {
	ctx := testContext(t)
	cs, _ := clients(t)
	ns := namespace(t)
	client := cs.EtcdaasV1beta1().ETCDInstances(ns)

	created, err := client.Create(ctx, &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "separate"},
		Spec:       v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](3)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// The main resource ignores status, and a metadata-only change keeps the generation.
	created.Status.Phase = v1beta1.PhaseRunning
	created.Labels = map[string]string{"x": "y"}
	updated, err := client.Update(ctx, created, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if updated.Status.Phase != "" || updated.Generation != 1 || updated.Labels["x"] != "y" {
		t.Errorf("main update: phase %q generation %d labels %v; want status ignored, generation 1, label set", updated.Status.Phase, updated.Generation, updated.Labels)
	}

	status := checkStatusSubresourceIgnoresSpec(t, ctx, client, updated)

	// A spec change moves the generation and keeps the status.
	status.Spec.Replicas = ptr.To[int32](5)
	spec, err := client.Update(ctx, status, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if spec.Generation != 2 || spec.Status.Phase != v1beta1.PhaseRunning {
		t.Errorf("spec update: generation %d phase %q, want 2, Running", spec.Generation, spec.Status.Phase)
	}

	// Invalid status is refused with its field path.
	spec.Status.ReadyReplicas = 9
	_, err = client.UpdateStatus(ctx, spec, metav1.UpdateOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "status.readyReplicas") {
		t.Errorf("ready > replicas: err = %v, want 422 naming status.readyReplicas", err)
	}

	checkV1alpha1StatusThroughState(t, ctx, cs.EtcdaasV1alpha1().ETCDInstances(ns), client)
}

// checkStatusSubresourceIgnoresSpec checks that the status subresource, given updated with
// a spec change (7 replicas) and a new status and annotation, ignores the spec and does not
// move the generation. It returns what the update answered.
func checkStatusSubresourceIgnoresSpec(t *testing.T, ctx context.Context, client typedv1beta1.ETCDInstanceInterface, updated *v1beta1.ETCDInstance) *v1beta1.ETCDInstance {
	t.Helper()
	updated.Spec.Replicas = ptr.To[int32](7)
	updated.Status = v1beta1.ETCDInstanceStatus{Phase: v1beta1.PhaseRunning, Replicas: 3, ReadyReplicas: 3, ObservedGeneration: 1}
	updated.Annotations = map[string]string{"controller": "was-here"}
	status, err := client.UpdateStatus(ctx, updated, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *status.Spec.Replicas != 3 || status.Status.Phase != v1beta1.PhaseRunning || status.Status.ReadyReplicas != 3 ||
		status.Generation != 1 || status.Annotations["controller"] != "was-here" {
		t.Errorf("status update: replicas %d phase %q ready %d generation %d annotations %v",
			*status.Spec.Replicas, status.Status.Phase, status.Status.ReadyReplicas, status.Generation, status.Annotations)
	}
	return status
}

// checkV1alpha1StatusThroughState checks that a v1alpha1 client (alpha) writes the status of
// instance separate through state, its spec change ignored, as client (v1beta1) reads it.
func checkV1alpha1StatusThroughState(t *testing.T, ctx context.Context, alpha typedv1alpha1.ETCDInstanceInterface, client typedv1beta1.ETCDInstanceInterface) {
	t.Helper()
	old, err := alpha.Get(ctx, "separate", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	old.Status.State = v1alpha1.StateFailed
	old.Spec.WithTLSBundle = true
	if _, err := alpha.UpdateStatus(ctx, old, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	final, err := client.Get(ctx, "separate", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if final.Status.Phase != v1beta1.PhaseFailed || final.Spec.TLS != nil || final.Generation != 2 {
		t.Errorf("after v1alpha1 status update: phase %q tls %+v generation %d", final.Status.Phase, final.Spec.TLS, final.Generation)
	}
}

// TestV1beta1OnlySubresources: restore, recover, defrag and backups are not served in v1alpha1 (404
// for an instance that exists), and are in v1beta1.
func TestV1beta1OnlySubresources(t *testing.T) {
	ctx := testContext(t)
	cs, _ := clients(t)
	ns := namespace(t)
	inst := &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "subresources"}}
	if _, err := cs.EtcdaasV1beta1().ETCDInstances(ns).Create(ctx, inst, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []struct{ name, verb string }{{"restore", "POST"}, {"recover", "POST"}, {"defrag", "POST"}, {"backups", "GET"}} {
		for _, c := range []struct {
			version string
			client  rest.Interface
			served  bool
		}{{"v1alpha1", cs.EtcdaasV1alpha1().RESTClient(), false}, {"v1beta1", cs.EtcdaasV1beta1().RESTClient(), true}} {
			var code int
			c.client.Verb(sub.verb).Namespace(ns).Resource("etcdinstances").Name(inst.Name).SubResource(sub.name).
				Body([]byte{}).Do(ctx).StatusCode(&code)
			if (code == http.StatusNotFound) == c.served {
				t.Errorf("%s %s in %s: %d, want it served: %v", sub.verb, sub.name, c.version, code, c.served)
			}
		}
	}
}
