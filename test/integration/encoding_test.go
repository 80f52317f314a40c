package integration

import (
	"bytes"
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/api/equality"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1alpha1"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/apiserver"
	versioned "github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned"
	typedv1alpha1 "github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned/typed/etcdaas/v1alpha1"
	typedv1beta1 "github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned/typed/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/test/integration/framework"
)

// protobufMagic starts every object Kubernetes encodes as protobuf, in etcd and on the wire.
var protobufMagic = []byte("k8s\x00")

// contentTypes records the Content-Type of every request body sent and every response
// received through a client.
type contentTypes struct {
	mu        sync.Mutex
	requests  []string
	responses []string
}

func (c *contentTypes) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := rt.RoundTrip(req)
		c.mu.Lock()
		defer c.mu.Unlock()
		if req.Body != nil {
			c.requests = append(c.requests, req.Method+" "+req.Header.Get("Content-Type"))
		}
		if err == nil {
			c.responses = append(c.responses, req.Method+" "+req.URL.Path+" "+resp.Header.Get("Content-Type"))
		}
		return resp, err
	})
}

// notProtobuf lists the recorded requests and responses that were not protobuf.
func (c *contentTypes) notProtobuf() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, s := range append(slices.Clone(c.requests), c.responses...) {
		if !strings.Contains(s, " "+runtime.ContentTypeProtobuf) {
			out = append(out, s)
		}
	}
	return out
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// storedValues returns the etcd values of the ETCDInstances of namespace ns, by name; it
// fails unless every one of names is there.
func storedValues(t *testing.T, s *framework.Server, ns string, names ...string) map[string][]byte {
	t.Helper()
	resp, err := s.EtcdClient(t).Get(testContext(t), "/registry/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, kv := range resp.Kvs {
		if dir, name, _ := strings.Cut(string(kv.Key), "/etcdinstances/"+ns+"/"); dir != string(kv.Key) {
			out[name] = kv.Value
		}
	}
	for _, name := range names {
		if _, ok := out[name]; !ok {
			t.Fatalf("no key in etcd for %s/%s", ns, name)
		}
	}
	return out
}

// decodeStored decodes a protobuf value from etcd: it must be a v1beta1 ETCDInstance.
func decodeStored(t *testing.T, value []byte) *v1beta1.ETCDInstance {
	t.Helper()
	obj, gvk, err := protobuf.NewSerializer(apiserver.Scheme, apiserver.Scheme).Decode(value, nil, nil)
	if err != nil {
		t.Fatalf("decoding a stored value as protobuf: %v", err)
	}
	inst, ok := obj.(*v1beta1.ETCDInstance)
	if !ok {
		t.Fatalf("stored as %v (%T), want etcdaas.dev/v1beta1 ETCDInstance", gvk, obj)
	}
	return inst
}

// fullSpec is a v1beta1 spec with every kind of field protobuf encodes: optional scalars,
// nested messages, quantities and a field whose Go name differs from its JSON name.
func fullSpec() v1beta1.ETCDInstanceSpec {
	size := resource.MustParse("2Gi")
	return v1beta1.ETCDInstanceSpec{
		Replicas: ptr.To[int32](3),
		Version:  "3.7",
		TLS:      &v1beta1.TLSSpec{Enabled: true},
		Storage:  &v1beta1.StorageSpec{VolumeSize: &size, StorageClassName: ptr.To("fast")},
		Backup: &v1beta1.BackupSpec{Schedule: "@daily", Keep: ptr.To[int32](4),
			Destination: v1beta1.BackupDestination{Local: &v1beta1.LocalDestination{}}},
		Defragmentation: &v1beta1.DefragmentationSpec{FreePercent: ptr.To[int32](30)},
	}
}

// nextEvents reads n events of a watch, or fails after a minute.
func nextEvents(t *testing.T, w watch.Interface, n int) []watch.Event {
	t.Helper()
	var out []watch.Event
	timeout := time.After(time.Minute)
	for len(out) < n {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatalf("watch closed after %d of %d events", len(out), n)
			}
			out = append(out, ev)
		case <-timeout:
			t.Fatalf("%d of %d watch events within a minute", len(out), n)
		}
	}
	return out
}

// TestProtobufClients: the generated clientset, which like client-go's clients of built-in
// types sends and asks for protobuf, creates, reads, updates, lists and watches in both
// versions without a single JSON request or response, and the server stores v1beta1 protobuf.
func TestProtobufClients(t *testing.T) {
	ctx := testContext(t)
	ns := namespace(t)
	cfg := shared.Config()
	rec := &contentTypes{}
	cfg.Wrap(rec.wrap)
	cs, err := versioned.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	betaClient, alphaClient := cs.EtcdaasV1beta1().ETCDInstances(ns), cs.EtcdaasV1alpha1().ETCDInstances(ns)
	watchBeta, err := betaClient.Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer watchBeta.Stop()
	watchAlpha, err := alphaClient.Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer watchAlpha.Stop()

	createInBothVersions(t, ctx, betaClient, alphaClient)

	// Each read in the other version.
	if got, err := alphaClient.Get(ctx, "beta", metav1.GetOptions{}); err != nil || *got.Spec.Replicas != 3 || !got.Spec.WithTLSBundle {
		t.Errorf("v1alpha1 GET of the v1beta1 object: %v %+v", err, got)
	}
	if got, err := betaClient.Get(ctx, "alpha", metav1.GetOptions{}); err != nil || *got.Spec.Replicas != 5 || got.Spec.TLS == nil || !got.Spec.TLS.Enabled {
		t.Errorf("v1beta1 GET of the v1alpha1 object: %v %+v", err, got)
	}
	// An update through v1alpha1 keeps the fields only v1beta1 has.
	got, err := alphaClient.Get(ctx, "beta", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got.Spec.Replicas = ptr.To[int32](7)
	if _, err := alphaClient.Update(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	want := fullSpec()
	want.Replicas = ptr.To[int32](7)
	if after, err := betaClient.Get(ctx, "beta", metav1.GetOptions{}); err != nil || !equality.Semantic.DeepEqual(after.Spec, want) {
		t.Errorf("v1beta1 GET after a v1alpha1 update: %v %+v", err, after)
	}
	if scale, err := betaClient.GetScale(ctx, "beta", metav1.GetOptions{}); err != nil || scale.Spec.Replicas != 7 {
		t.Errorf("scale: %v %+v", err, scale)
	}

	checkListsInBothVersions(t, ctx, betaClient, alphaClient, want)

	checkWatchedInBothVersions(t, map[string]watch.Interface{"v1beta1": watchBeta, "v1alpha1": watchAlpha})
	if bad := rec.notProtobuf(); len(bad) > 0 {
		t.Errorf("requests or responses not in protobuf: %v", bad)
	}

	stored := storedValues(t, shared, ns, "alpha", "beta")
	for _, name := range []string{"alpha", "beta"} {
		if !bytes.HasPrefix(stored[name], protobufMagic) {
			t.Fatalf("%s is stored as %.40q, want protobuf", name, stored[name])
		}
	}
	if inst := decodeStored(t, stored["beta"]); !equality.Semantic.DeepEqual(inst.Spec, want) {
		t.Errorf("stored v1beta1 spec %+v", inst.Spec)
	}
}

// createInBothVersions creates "beta" (the full spec) through v1beta1 and "alpha" through
// v1alpha1, and checks what each create answered.
func createInBothVersions(t *testing.T, ctx context.Context, betaClient typedv1beta1.ETCDInstanceInterface, alphaClient typedv1alpha1.ETCDInstanceInterface) {
	t.Helper()
	beta, err := betaClient.Create(ctx, &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "beta", Labels: map[string]string{"team": "a"}}, Spec: fullSpec(),
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(beta.Spec, fullSpec()) || beta.Labels["team"] != "a" || beta.UID == "" {
		t.Errorf("v1beta1 create answered %+v", beta)
	}
	alpha, err := alphaClient.Create(ctx, &v1alpha1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "alpha"}, Spec: v1alpha1.ETCDInstanceSpec{Replicas: ptr.To[int32](5), WithTLSBundle: true},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *alpha.Spec.Replicas != 5 || !alpha.Spec.WithTLSBundle {
		t.Errorf("v1alpha1 create answered %+v", alpha.Spec)
	}
}

// checkListsInBothVersions checks that both versions list "alpha" and "beta" (whose spec is
// now want).
func checkListsInBothVersions(t *testing.T, ctx context.Context, betaClient typedv1beta1.ETCDInstanceInterface, alphaClient typedv1alpha1.ETCDInstanceInterface, want v1beta1.ETCDInstanceSpec) {
	t.Helper()
	betaList, err := betaClient.List(ctx, metav1.ListOptions{})
	if err != nil || len(betaList.Items) != 2 || betaList.Items[0].Name != "alpha" || !equality.Semantic.DeepEqual(betaList.Items[1].Spec, want) {
		t.Errorf("v1beta1 LIST: %v %+v", err, betaList)
	}
	alphaList, err := alphaClient.List(ctx, metav1.ListOptions{})
	if err != nil || len(alphaList.Items) != 2 || *alphaList.Items[0].Spec.Replicas != 5 || *alphaList.Items[1].Spec.Replicas != 7 {
		t.Errorf("v1alpha1 LIST: %v %+v", err, alphaList)
	}
}

// checkWatchedInBothVersions checks that each version's watch saw both creations and the
// update, in order, as objects of its version.
func checkWatchedInBothVersions(t *testing.T, watches map[string]watch.Interface) {
	t.Helper()
	for version, w := range watches {
		var seen []string
		for _, ev := range nextEvents(t, w, 3) {
			meta, err := apimeta.Accessor(ev.Object)
			if err != nil {
				t.Fatalf("%s watch: %v", version, err)
			}
			seen = append(seen, string(ev.Type)+" "+meta.GetName())
			if gv := ev.Object.GetObjectKind().GroupVersionKind().Version; gv != version && gv != "" {
				t.Errorf("%s watch delivered a %s object", version, gv)
			}
		}
		if strings.Join(seen, ",") != "ADDED beta,ADDED alpha,MODIFIED beta" {
			t.Errorf("%s watch events %v", version, seen)
		}
	}
}

// TestProtobufRawRequests: a client that accepts only protobuf, or protobuf first, gets
// protobuf; one that accepts JSON first gets JSON; a create sent as protobuf with a body
// that is not a protobuf ETCDInstance is a 400, not a 500, and stores nothing.
func TestProtobufRawRequests(t *testing.T) {
	ctx := testContext(t)
	cs, _ := clients(t)
	ns := namespace(t)
	if _, err := cs.EtcdaasV1beta1().ETCDInstances(ns).Create(ctx, &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "raw"}, Spec: v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](3)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	list := "/apis/etcdaas.dev/v1alpha1/namespaces/" + ns + "/etcdinstances"
	for accept, wantType := range map[string]string{
		runtime.ContentTypeProtobuf:                                  runtime.ContentTypeProtobuf,
		runtime.ContentTypeProtobuf + ", " + runtime.ContentTypeJSON: runtime.ContentTypeProtobuf,
		runtime.ContentTypeJSON + ", " + runtime.ContentTypeProtobuf: runtime.ContentTypeJSON,
	} {
		res := do(t, http.MethodGet, list, nil, "Accept", accept)
		if res.code != http.StatusOK || res.header.Get("Content-Type") != wantType {
			t.Errorf("Accept %q: %d %s, want 200 %s", accept, res.code, res.header.Get("Content-Type"), wantType)
			continue
		}
		if wantType != runtime.ContentTypeProtobuf {
			continue
		}
		obj, _, err := protobuf.NewSerializer(apiserver.Scheme, apiserver.Scheme).Decode(res.body, nil, nil)
		l, ok := obj.(*v1alpha1.ETCDInstanceList)
		if err != nil || !ok || len(l.Items) != 1 || l.Items[0].Name != "raw" || *l.Items[0].Spec.Replicas != 3 {
			t.Errorf("Accept %q: decoded %v %#v", accept, err, obj)
		}
	}

	for name, body := range map[string][]byte{
		"not protobuf":    []byte(`{"apiVersion":"etcdaas.dev/v1beta1","kind":"ETCDInstance","metadata":{"name":"json"}}`),
		"truncated":       append(slices.Clone(protobufMagic), 0x0a, 0x20, 0x0a),
		"magic only":      protobufMagic,
		"unknown message": append(slices.Clone(protobufMagic), 0x0a, 0x08, 0x0a, 0x02, 'v', '1', 0x12, 0x02, 'P', 'o'),
	} {
		res := do(t, http.MethodPost, "/apis/etcdaas.dev/v1beta1/namespaces/"+ns+"/etcdinstances", body,
			"Content-Type", runtime.ContentTypeProtobuf, "Accept", runtime.ContentTypeJSON)
		if res.code != http.StatusBadRequest && res.code != http.StatusUnsupportedMediaType {
			t.Errorf("%s: %d %s, want 400", name, res.code, res.body)
		}
	}
	if l, err := cs.EtcdaasV1beta1().ETCDInstances(ns).List(ctx, metav1.ListOptions{}); err != nil || len(l.Items) != 1 {
		t.Errorf("after the bad creates: %v %d objects, want 1", err, len(l.Items))
	}
}

// TestJSONStoredObjectsStillRead: objects a server stored as JSON (every server before
// protobuf, or --storage-media-type=application/json) are read, listed and watched in both
// versions by a server that stores protobuf, and are rewritten as protobuf when updated.
func TestJSONStoredObjectsStillRead(t *testing.T) {
	dir := t.TempDir()
	ns := namespace(t)
	old, err := framework.Start(context.Background(), framework.Options{DataDir: dir, StorageMediaType: runtime.ContentTypeJSON})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() { // a failure before the restart must not leave it running
		if !stopped {
			_ = old.Stop()
		}
	})
	jsonConfig := old.Config()
	jsonConfig.ContentType = runtime.ContentTypeJSON
	oldClient, err := versioned.NewForConfig(jsonConfig)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	beta, alpha := createAsJSON(t, ctx, oldClient, old, ns)
	stopped = true
	if err := old.Stop(); err != nil {
		t.Fatal(err)
	}

	s := framework.StartT(t, framework.Options{DataDir: dir})
	cs, err := versioned.NewForConfig(s.Config())
	if err != nil {
		t.Fatal(err)
	}
	betaClient, alphaClient := cs.EtcdaasV1beta1().ETCDInstances(ns), cs.EtcdaasV1alpha1().ETCDInstances(ns)
	listRV := checkJSONObjectsRead(t, ctx, betaClient, alphaClient, beta, alpha)

	// A watch from the list sees the update that rewrites the object as protobuf.
	w, err := alphaClient.Watch(ctx, metav1.ListOptions{ResourceVersion: listRV})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	got, err := betaClient.Get(ctx, "beta", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got.Spec.Replicas = ptr.To[int32](9)
	if _, err := betaClient.Update(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	ev := nextEvents(t, w, 1)[0]
	if inst, ok := ev.Object.(*v1alpha1.ETCDInstance); ev.Type != watch.Modified || !ok || inst.Name != "beta" || *inst.Spec.Replicas != 9 {
		t.Errorf("v1alpha1 watch: %s %#v", ev.Type, ev.Object)
	}

	checkStoredAfterRewrite(t, s, ns)
}

// createAsJSON creates "beta" (v1beta1, the full spec) and "alpha" (v1alpha1) in ns through
// the server old, which stores JSON, and checks that it stored them as JSON.
func createAsJSON(t *testing.T, ctx context.Context, oldClient *versioned.Clientset, old *framework.Server, ns string) (*v1beta1.ETCDInstance, *v1alpha1.ETCDInstance) {
	t.Helper()
	beta, err := oldClient.EtcdaasV1beta1().ETCDInstances(ns).Create(ctx, &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "beta"}, Spec: fullSpec(),
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	alpha, err := oldClient.EtcdaasV1alpha1().ETCDInstances(ns).Create(ctx, &v1alpha1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "alpha"}, Spec: v1alpha1.ETCDInstanceSpec{Replicas: ptr.To[int32](5)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for name, value := range storedValues(t, old, ns, "alpha", "beta") {
		if !bytes.HasPrefix(value, []byte("{")) {
			t.Fatalf("the JSON server stored %s as %.40q", name, value)
		}
	}
	return beta, alpha
}

// checkJSONObjectsRead checks that beta and alpha, stored as JSON, read and list in both
// versions as they were created; it returns the resource version of the v1alpha1 list.
func checkJSONObjectsRead(t *testing.T, ctx context.Context, betaClient typedv1beta1.ETCDInstanceInterface, alphaClient typedv1alpha1.ETCDInstanceInterface, beta *v1beta1.ETCDInstance, alpha *v1alpha1.ETCDInstance) string {
	t.Helper()
	if got, err := betaClient.Get(ctx, "beta", metav1.GetOptions{}); err != nil || !equality.Semantic.DeepEqual(got.Spec, beta.Spec) ||
		got.ResourceVersion != beta.ResourceVersion || got.UID != beta.UID {
		t.Errorf("v1beta1 GET of a JSON object: %v %+v", err, got)
	}
	if got, err := alphaClient.Get(ctx, "beta", metav1.GetOptions{}); err != nil || *got.Spec.Replicas != 3 || !got.Spec.WithTLSBundle {
		t.Errorf("v1alpha1 GET of a JSON object: %v %+v", err, got)
	}
	betaList, err := betaClient.List(ctx, metav1.ListOptions{})
	if err != nil || len(betaList.Items) != 2 || betaList.Items[0].UID != alpha.UID || *betaList.Items[0].Spec.Replicas != 5 {
		t.Fatalf("v1beta1 LIST of JSON objects: %v %+v", err, betaList)
	}
	alphaList, err := alphaClient.List(ctx, metav1.ListOptions{})
	if err != nil || len(alphaList.Items) != 2 || *alphaList.Items[1].Spec.Replicas != 3 {
		t.Fatalf("v1alpha1 LIST of JSON objects: %v %+v", err, alphaList)
	}
	return alphaList.ResourceVersion
}

// checkStoredAfterRewrite checks that alpha, never updated, is still stored as JSON, and
// beta, rewritten by its update, decodes with the 9 replicas of that update.
func checkStoredAfterRewrite(t *testing.T, s *framework.Server, ns string) {
	t.Helper()
	stored := storedValues(t, s, ns, "alpha", "beta")
	if !bytes.HasPrefix(stored["alpha"], []byte("{")) {
		t.Errorf("alpha, not updated, is stored as %.40q: want the JSON it was written as", stored["alpha"])
	}
	want := fullSpec()
	want.Replicas = ptr.To[int32](9)
	if inst := decodeStored(t, stored["beta"]); !equality.Semantic.DeepEqual(inst.Spec, want) {
		t.Errorf("beta rewritten as %+v", inst.Spec)
	}
}
