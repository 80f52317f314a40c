package conversion

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1alpha1"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
)

// benchObject is a realistic running three-member instance.
func benchObject() *v1beta1.ETCDInstance {
	obj := &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "orders", Namespace: "shop", Generation: 4,
			Labels: map[string]string{"team": "shop"}, CreationTimestamp: metav1.Unix(1700000000, 0)},
		Spec: v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](3), Version: "3.7", TLS: &v1beta1.TLSSpec{Enabled: true}},
		Status: v1beta1.ETCDInstanceStatus{ObservedGeneration: 4, Phase: v1beta1.PhaseRunning, Replicas: 3, ReadyReplicas: 3,
			Selector: etcdaas.MemberSelector("orders")},
	}
	for i, name := range []string{"orders-0", "orders-1", "orders-2"} {
		obj.Status.Members = append(obj.Status.Members, v1beta1.MemberStatus{Name: name, ID: "8e9e05c52164694d",
			PeerURL: "https://127.0.0.1:2380", ClientURL: "https://127.0.0.1:2379", Ready: true, Leader: i == 0})
	}
	for _, t := range []string{etcdaas.ConditionAvailable, etcdaas.ConditionProgressing, etcdaas.ConditionDegraded} {
		obj.Status.Conditions = append(obj.Status.Conditions, metav1.Condition{Type: t, Status: metav1.ConditionTrue,
			Reason: "Reconciled", Message: "3/3 members ready", LastTransitionTime: metav1.Unix(1700000100, 0)})
	}
	return obj
}

// throughHub returns a benchmark converting in to a new object of target's type through the
// internal hub, as the API server does for every request and response.
func throughHub(c *Converter, in runtime.Object, target func() runtime.Object) func(*testing.B) {
	return func(b *testing.B) {
		hub := &etcdaas.ETCDInstance{}
		b.ReportAllocs()
		for b.Loop() {
			if err := c.scheme.Convert(in, hub, nil); err != nil {
				b.Fatal(err)
			}
			if err := c.scheme.Convert(hub, target(), nil); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkConvert measures one object through the hub in each direction next to its peer,
// v1beta1 to v1beta1 through the same hub (what every storage round trip costs), run first,
// and reports each direction's cost as a ratio to that peer ("x-peer").
func BenchmarkConvert(b *testing.B) {
	c := New()
	beta := benchObject()
	alpha, err := c.Convert(beta, v1alpha1.SchemeGroupVersion)
	if err != nil {
		b.Fatal(err)
	}
	newBeta := func() runtime.Object { return &v1beta1.ETCDInstance{} }
	newAlpha := func() runtime.Object { return &v1alpha1.ETCDInstance{} }
	var peerNsPerOp float64
	for i, tc := range []struct {
		name  string
		bench func(*testing.B)
	}{
		{"v1beta1-to-v1beta1(peer)", throughHub(c, beta, newBeta)},
		{"v1beta1-to-v1alpha1", throughHub(c, beta, newAlpha)},
		{"v1alpha1-to-v1beta1", throughHub(c, alpha, newBeta)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			tc.bench(b)
			nsPerOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			if i == 0 {
				peerNsPerOp = nsPerOp // the peer's last (longest) run is the reference
			}
			b.ReportMetric(nsPerOp/peerNsPerOp, "x-peer")
		})
	}
}

// BenchmarkConvertPerObject converts a LIST of 1000 objects from the storage version to
// v1alpha1 the way etcdaas-apiserver does (in process, through the hub) and the way a CRD
// with this package's conversion webhook does (one ConversionReview over HTTP for the list,
// JSON both ways), and reports each per object ("ns/object") and the webhook's cost as a
// ratio to the in-process conversion ("x-in-process").
func BenchmarkConvertPerObject(b *testing.B) {
	const objects = 1000
	c := New()
	beta := benchObject()
	beta.SetGroupVersionKind(v1beta1.SchemeGroupVersion.WithKind("ETCDInstance"))
	raw, err := json.Marshal(beta)
	if err != nil {
		b.Fatal(err)
	}
	raw = bytes.Replace(raw, []byte(`"apiVersion":"etcdaas.dev/v1beta1"`), []byte(`"apiVersion":"`+peerGroup+`/v1beta1"`), 1)
	review, err := json.Marshal(apiextensionsv1.ConversionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "apiextensions.k8s.io/v1", Kind: "ConversionReview"},
		Request: &apiextensionsv1.ConversionRequest{UID: "u", DesiredAPIVersion: peerGroup + "/v1alpha1",
			Objects: slices.Repeat([]runtime.RawExtension{{Raw: raw}}, objects)},
	})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(NewWebhook(peerGroup))
	defer srv.Close()
	var inProcess float64
	b.Run("in-process", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for range objects {
				if _, err := c.Convert(beta, v1alpha1.SchemeGroupVersion); err != nil {
					b.Fatal(err)
				}
			}
		}
		inProcess = float64(b.Elapsed().Nanoseconds()) / float64(b.N*objects)
		b.ReportMetric(inProcess, "ns/object")
	})
	b.Run("webhook", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			resp, err := http.Post(srv.URL, "application/json", bytes.NewReader(review))
			if err != nil {
				b.Fatal(err)
			}
			var out apiextensionsv1.ConversionReview
			err = json.NewDecoder(resp.Body).Decode(&out)
			resp.Body.Close()
			if err != nil || out.Response == nil || len(out.Response.ConvertedObjects) != objects {
				b.Fatalf("review answered %v: %+v", err, out.Response)
			}
		}
		perObject := float64(b.Elapsed().Nanoseconds()) / float64(b.N*objects)
		b.ReportMetric(perObject, "ns/object")
		b.ReportMetric(perObject/inProcess, "x-in-process")
	})
}
