package integration

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned"
	"github.com/etcdaas/etcdaas/pkg/generated/informers/externalversions"
)

// requestLog records the method and URL of every request a client sends.
type requestLog struct {
	mu       sync.Mutex
	requests []string
}

// wrap returns rt recording every request before passing it on.
func (l *requestLog) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		l.mu.Lock()
		l.requests = append(l.requests, req.Method+" "+req.URL.Path+"?"+req.URL.RawQuery)
		l.mu.Unlock()
		return rt.RoundTrip(req)
	})
}

// matching returns the recorded requests whose path ends with suffix.
func (l *requestLog) matching(suffix string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.requests {
		path, _, _ := strings.Cut(r, "?")
		if strings.HasSuffix(path, suffix) {
			out = append(out, r)
		}
	}
	return out
}

// TestInformersStreamTheirInitialListInBothVersions: the generated informers of both versions,
// whose reflectors stream their initial list (client-go's WatchListClient, on by default),
// sync through a single watch with sendInitialEvents, never falling back to a LIST (which
// client-go does silently when the server does not end the initial events with its
// bookmark), and the v1alpha1 informer holds converted objects that keep the v1beta1 fields.
func TestInformersStreamTheirInitialListInBothVersions(t *testing.T) {
	ctx := testContext(t)
	ns := namespace(t)
	log := &requestLog{}
	cfg := shared.Config()
	cfg.Wrap(log.wrap)
	cs, err := versioned.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"one", "three", "two"}
	for _, name := range names {
		obj := &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](1), TLS: &v1beta1.TLSSpec{Enabled: true},
				Defragmentation: &v1beta1.DefragmentationSpec{FreePercent: ptr.To[int32](30)}}}
		if _, err := cs.EtcdaasV1beta1().ETCDInstances(ns).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	factory := externalversions.NewSharedInformerFactoryWithOptions(cs, 0, externalversions.WithNamespace(ns))
	beta := factory.Etcdaas().V1beta1().ETCDInstances()
	alpha := factory.Etcdaas().V1alpha1().ETCDInstances()
	beta.Informer()
	alpha.Informer()
	stop := make(chan struct{})
	factory.Start(stop)
	t.Cleanup(func() {
		close(stop)
		factory.Shutdown()
	})
	syncCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), beta.Informer().HasSynced, alpha.Informer().HasSynced) {
		t.Fatalf("informers not synced within 30s; requests: %v", log.matching("/etcdinstances"))
	}

	for _, version := range []string{"v1beta1", "v1alpha1"} {
		var watches, lists []string
		for _, r := range log.matching("/" + version + "/namespaces/" + ns + "/etcdinstances") {
			if strings.Contains(r, "watch=true") {
				watches = append(watches, r)
			} else if strings.HasPrefix(r, "GET ") {
				lists = append(lists, r)
			}
		}
		if len(lists) != 0 || len(watches) == 0 || !strings.Contains(watches[0], "sendInitialEvents=true") {
			t.Errorf("%s informer: lists %v, watches %v; want one watch with sendInitialEvents=true and no list", version, lists, watches)
		}
	}

	betaObjs, err := beta.Lister().ETCDInstances(ns).List(labels.Everything())
	if err != nil {
		t.Fatal(err)
	}
	alphaObjs, err := alpha.Lister().ETCDInstances(ns).List(labels.Everything())
	if err != nil {
		t.Fatal(err)
	}
	var betaNames, alphaNames []string
	for _, o := range betaObjs {
		betaNames = append(betaNames, o.Name)
	}
	for _, o := range alphaObjs {
		alphaNames = append(alphaNames, o.Name)
		if !o.Spec.WithTLSBundle || !strings.Contains(o.Annotations[etcdaas.PreservedFieldsAnnotation], `"freePercent":30`) {
			t.Errorf("v1alpha1 informer's %s: with_tls_bundle %v, annotation %q; want true and the defragmentation kept",
				o.Name, o.Spec.WithTLSBundle, o.Annotations[etcdaas.PreservedFieldsAnnotation])
		}
	}
	slices.Sort(betaNames)
	slices.Sort(alphaNames)
	if !slices.Equal(betaNames, names) || !slices.Equal(alphaNames, names) {
		t.Errorf("listers hold v1beta1 %v, v1alpha1 %v; want %v in both", betaNames, alphaNames, names)
	}
}

// TestPaginationAcrossVersions: a continue token one version's LIST gives is good for the
// other's, as every version reads the same store, and the pages together hold every instance
// once.
func TestPaginationAcrossVersions(t *testing.T) {
	ctx := testContext(t)
	cs, _ := clients(t)
	ns := namespace(t)
	names := []string{"a", "b", "c", "d", "e"}
	for _, name := range names {
		obj := &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](1)}}
		if _, err := cs.EtcdaasV1beta1().ETCDInstances(ns).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	token := ""
	for page := 0; page < len(names)+1; page++ {
		opts := metav1.ListOptions{Limit: 2, Continue: token}
		var items []string
		var meta metav1.ListMeta
		if page%2 == 0 {
			list, err := cs.EtcdaasV1alpha1().ETCDInstances(ns).List(ctx, opts)
			if err != nil {
				t.Fatalf("v1alpha1 page %d: %v", page, err)
			}
			meta = list.ListMeta
			for _, item := range list.Items {
				items = append(items, item.Name)
			}
		} else {
			list, err := cs.EtcdaasV1beta1().ETCDInstances(ns).List(ctx, opts)
			if err != nil {
				t.Fatalf("v1beta1 page %d: %v", page, err)
			}
			meta = list.ListMeta
			for _, item := range list.Items {
				items = append(items, item.Name)
			}
		}
		got = append(got, items...)
		token = meta.Continue
		if token == "" {
			break
		}
	}
	if !slices.Equal(got, names) {
		t.Errorf("pages alternating v1alpha1 and v1beta1 gave %v; want %v", got, names)
	}
}
