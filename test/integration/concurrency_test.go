package integration

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	applyv1alpha1 "github.com/etcdaas/etcdaas/pkg/generated/applyconfiguration/etcdaas/v1alpha1"
	applyv1beta1 "github.com/etcdaas/etcdaas/pkg/generated/applyconfiguration/etcdaas/v1beta1"
	versioned "github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned"
	typedv1alpha1 "github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned/typed/etcdaas/v1alpha1"
	typedv1beta1 "github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned/typed/etcdaas/v1beta1"
)

const (
	// concurrentWriters is how many read-modify-write loops race on one object.
	concurrentWriters = 100
	// attemptsPerWriter bounds each loop: it stops after one landed change or this many 409s.
	attemptsPerWriter = 300
	counterAnnotation = "reliability.etcdaas.dev/counter"
)

// unthrottledClients returns a clientset without client-side rate limiting: the point is to
// race the server, not the client's token bucket.
func unthrottledClients(t *testing.T) *versioned.Clientset {
	t.Helper()
	cfg := shared.Config()
	cfg.QPS, cfg.Burst = -1, 0
	cs, err := versioned.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// writeOutcome tallies what the loops saw.
type writeOutcome struct {
	mu        sync.Mutex
	landed    map[string]int // by write path
	conflicts map[string]int
	// readRVs are the resourceVersions the landed writes were based on: two landed writes
	// based on the same read would mean one overwrote the other.
	readRVs map[string]string
	failure error
}

func (o *writeOutcome) record(path, readRV string, err error) (done bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case err == nil:
		o.landed[path]++
		if other, seen := o.readRVs[readRV]; seen && o.failure == nil {
			o.failure = fmt.Errorf("%s and %s both landed a write based on resourceVersion %s", other, path, readRV)
		}
		o.readRVs[readRV] = path
		return true
	case apierrors.IsConflict(err):
		o.conflicts[path]++
		return false
	default:
		if o.failure == nil {
			o.failure = fmt.Errorf("%s: %v (only success or 409 is acceptable)", path, err)
		}
		return true
	}
}

func (o *writeOutcome) total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// TestConcurrentReadModifyWrite races 100 read-modify-write loops on one instance, a quarter
// each through v1alpha1 update, v1beta1 update, v1alpha1 apply and v1beta1 apply (apply with
// a resourceVersion precondition). Each landed write increments a counter annotation from the
// value it read: the final counter equals the number of landed writes only if no write was
// lost. Every v1beta1 read checks that the fields v1alpha1 cannot express are still there.
func TestConcurrentReadModifyWrite(t *testing.T) {
	ctx := testContext(t)
	cs := unthrottledClients(t)
	ns := namespace(t)
	beta := cs.EtcdaasV1beta1().ETCDInstances(ns)
	alpha := cs.EtcdaasV1alpha1().ETCDInstances(ns)
	const name = "contended"

	created, err := beta.Create(ctx, &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{counterAnnotation: "0"}},
		Spec: v1beta1.ETCDInstanceSpec{
			Replicas: ptr.To[int32](3),
			Version:  "3.6",
			TLS:      &v1beta1.TLSSpec{Enabled: true},
			Storage:  &v1beta1.StorageSpec{VolumeSize: ptr.To(resource.MustParse("2Gi"))},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	betaOnly := created.Spec.DeepCopy()
	betaOnly.Replicas = nil
	ci := &contendedInstance{ns: ns, name: name, alpha: alpha, beta: beta, betaOnly: betaOnly}

	order := []string{"v1alpha1-update", "v1beta1-update", "v1alpha1-apply", "v1beta1-apply"}
	outcome := raceWriters(ctx, ci.writePaths(), order, concurrentWriters)
	if outcome.failure != nil {
		t.Fatal(outcome.failure)
	}

	final, err := beta.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ci.checkBetaFields(final); err != nil {
		t.Error(err)
	}
	landed := outcome.total(outcome.landed)
	if got := final.Annotations[counterAnnotation]; got != strconv.Itoa(landed) {
		t.Errorf("counter = %s after %d landed writes: %d lost", got, landed, landed-atoiOr(got))
	}
	if landed < concurrentWriters/2 {
		t.Errorf("only %d of %d writers landed their change within %d attempts", landed, concurrentWriters, attemptsPerWriter)
	}
	for _, path := range order {
		if outcome.landed[path] == 0 {
			t.Errorf("no write through %s landed", path)
		}
	}
	t.Logf("landed %d writes (%v), %d conflicts (%v), counter %s",
		landed, outcome.landed, outcome.total(outcome.conflicts), outcome.conflicts, final.Annotations[counterAnnotation])
}

// contendedInstance is the instance TestConcurrentReadModifyWrite's writers race on, with
// the clients of both versions and the v1beta1-only part of its spec as created.
type contendedInstance struct {
	ns, name string
	alpha    typedv1alpha1.ETCDInstanceInterface
	beta     typedv1beta1.ETCDInstanceInterface
	betaOnly *v1beta1.ETCDInstanceSpec // the spec as created, without replicas
}

// checkBetaFields reports whether obj lost or changed the fields v1alpha1 cannot express,
// or shows the annotation that preserves them.
func (ci *contendedInstance) checkBetaFields(obj *v1beta1.ETCDInstance) error {
	got := obj.Spec.DeepCopy()
	got.Replicas = nil
	if !equality.Semantic.DeepEqual(ci.betaOnly, got) {
		return fmt.Errorf("v1beta1-only fields changed: want %+v, got %+v", ci.betaOnly, got)
	}
	if _, ok := obj.Annotations[etcdaas.PreservedFieldsAnnotation]; ok {
		return fmt.Errorf("v1beta1 object shows %s", etcdaas.PreservedFieldsAnnotation)
	}
	return nil
}

// nextCounter is the counter annotation's value plus one.
func nextCounter(annotations map[string]string) (string, error) {
	n, err := strconv.Atoi(annotations[counterAnnotation])
	if err != nil {
		return "", fmt.Errorf("counter annotation %q: %v", annotations[counterAnnotation], err)
	}
	return strconv.Itoa(n + 1), nil
}

// writePath reads the object, increments the counter and writes; it returns the
// resourceVersion it read and the write's error.
type writePath func(ctx context.Context, manager string) (string, error)

// writePaths are the four ways to write the counter, by name.
func (ci *contendedInstance) writePaths() map[string]writePath {
	return map[string]writePath{
		"v1alpha1-update": func(ctx context.Context, _ string) (string, error) {
			obj, err := ci.alpha.Get(ctx, ci.name, metav1.GetOptions{})
			if err != nil {
				return "", err
			}
			if obj.Annotations[counterAnnotation], err = nextCounter(obj.Annotations); err != nil {
				return "", err
			}
			_, err = ci.alpha.Update(ctx, obj, metav1.UpdateOptions{})
			return obj.ResourceVersion, err
		},
		"v1beta1-update": func(ctx context.Context, _ string) (string, error) {
			obj, err := ci.beta.Get(ctx, ci.name, metav1.GetOptions{})
			if err != nil {
				return "", err
			}
			if err := ci.checkBetaFields(obj); err != nil {
				return "", err
			}
			if obj.Annotations[counterAnnotation], err = nextCounter(obj.Annotations); err != nil {
				return "", err
			}
			_, err = ci.beta.Update(ctx, obj, metav1.UpdateOptions{})
			return obj.ResourceVersion, err
		},
		"v1alpha1-apply": func(ctx context.Context, manager string) (string, error) {
			obj, err := ci.alpha.Get(ctx, ci.name, metav1.GetOptions{})
			if err != nil {
				return "", err
			}
			value, err := nextCounter(obj.Annotations)
			if err != nil {
				return "", err
			}
			_, err = ci.alpha.Apply(ctx, applyv1alpha1.ETCDInstance(ci.name, ci.ns).
				WithResourceVersion(obj.ResourceVersion).
				WithAnnotations(map[string]string{counterAnnotation: value}),
				metav1.ApplyOptions{FieldManager: manager, Force: true})
			return obj.ResourceVersion, err
		},
		"v1beta1-apply": func(ctx context.Context, manager string) (string, error) {
			obj, err := ci.beta.Get(ctx, ci.name, metav1.GetOptions{})
			if err != nil {
				return "", err
			}
			if err := ci.checkBetaFields(obj); err != nil {
				return "", err
			}
			value, err := nextCounter(obj.Annotations)
			if err != nil {
				return "", err
			}
			_, err = ci.beta.Apply(ctx, applyv1beta1.ETCDInstance(ci.name, ci.ns).
				WithResourceVersion(obj.ResourceVersion).
				WithAnnotations(map[string]string{counterAnnotation: value}),
				metav1.ApplyOptions{FieldManager: manager, Force: true})
			return obj.ResourceVersion, err
		},
	}
}

// raceWriters runs writers read-modify-write loops, cycling through the paths in order, and
// tallies what they saw.
func raceWriters(ctx context.Context, paths map[string]writePath, order []string, writers int) *writeOutcome {
	outcome := &writeOutcome{landed: map[string]int{}, conflicts: map[string]int{}, readRVs: map[string]string{}}
	var wg sync.WaitGroup
	for i := 0; i < writers; i++ {
		path := order[i%len(order)]
		write := paths[path]
		manager := fmt.Sprintf("writer-%d", i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for attempt := 0; attempt < attemptsPerWriter && ctx.Err() == nil; attempt++ {
				readRV, err := write(ctx, manager)
				if outcome.record(path, readRV, err) {
					return
				}
			}
		}()
	}
	wg.Wait()
	return outcome
}

func atoiOr(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// TestScaleRacesSpecUpdates races writers through /scale against writers updating the spec:
// every write carries the resourceVersion it read, so each lands or gets 409, no two landed
// writes are based on the same read, and every landed write bumps the generation once.
func TestScaleRacesSpecUpdates(t *testing.T) {
	ctx := testContext(t)
	cs := unthrottledClients(t)
	ns := namespace(t)
	beta := cs.EtcdaasV1beta1().ETCDInstances(ns)
	alpha := cs.EtcdaasV1alpha1().ETCDInstances(ns)
	const name = "scaled-race"
	if _, err := beta.Create(ctx, &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](1), Version: "3.6"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	paths := scaleRaceWrites(beta, alpha, name)
	order := []string{"v1beta1-scale", "v1alpha1-scale", "v1beta1-spec", "v1alpha1-spec"}
	outcome := raceWriters(ctx, paths, order, 40)
	if outcome.failure != nil {
		t.Fatal(outcome.failure)
	}
	final, err := beta.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	landed := outcome.total(outcome.landed)
	if final.Generation != int64(1+landed) {
		t.Errorf("generation %d after %d landed spec changes, want %d", final.Generation, landed, 1+landed)
	}
	for _, path := range order {
		if outcome.landed[path] == 0 {
			t.Errorf("no write through %s landed", path)
		}
	}
	t.Logf("landed %d writes (%v), %d conflicts (%v), generation %d",
		landed, outcome.landed, outcome.total(outcome.conflicts), outcome.conflicts, final.Generation)
}

// scaleRaceWrites gives the read-modify-writes TestScaleRacesSpecUpdates races, by path: each
// changes the replicas of name through its version's scale or spec and returns the
// resourceVersion it read.
func scaleRaceWrites(beta typedv1beta1.ETCDInstanceInterface, alpha typedv1alpha1.ETCDInstanceInterface, name string) map[string]writePath {
	// other returns a replica count different from n, so that every landed write changes the
	// spec and with it the generation.
	other := func(n int32) int32 { return n%5 + 1 }
	return map[string]writePath{
		"v1beta1-scale": func(ctx context.Context, _ string) (string, error) {
			scale, err := beta.GetScale(ctx, name, metav1.GetOptions{})
			if err != nil {
				return "", err
			}
			scale.Spec.Replicas = other(scale.Spec.Replicas)
			_, err = beta.UpdateScale(ctx, name, scale, metav1.UpdateOptions{})
			return scale.ResourceVersion, err
		},
		"v1alpha1-scale": func(ctx context.Context, _ string) (string, error) {
			scale, err := alpha.GetScale(ctx, name, metav1.GetOptions{})
			if err != nil {
				return "", err
			}
			scale.Spec.Replicas = other(scale.Spec.Replicas)
			_, err = alpha.UpdateScale(ctx, name, scale, metav1.UpdateOptions{})
			return scale.ResourceVersion, err
		},
		"v1beta1-spec": func(ctx context.Context, _ string) (string, error) {
			obj, err := beta.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return "", err
			}
			obj.Spec.Replicas = ptr.To(other(*obj.Spec.Replicas))
			_, err = beta.Update(ctx, obj, metav1.UpdateOptions{})
			return obj.ResourceVersion, err
		},
		"v1alpha1-spec": func(ctx context.Context, _ string) (string, error) {
			obj, err := alpha.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return "", err
			}
			obj.Spec.Replicas = ptr.To(other(*obj.Spec.Replicas))
			_, err = alpha.Update(ctx, obj, metav1.UpdateOptions{})
			return obj.ResourceVersion, err
		},
	}
}
