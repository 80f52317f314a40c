// Package fanout runs the watch fan-out scenario against an etcdaas API server: many watches
// on one namespace through one client, then a burst of creates there by a few other clients.
// It counts, for every watch, the ADDED events it received and whether the server ended it
// early, and reads the server's own count of watchers it closed for being too slow.
package fanout

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
)

// Resource is the watched resource, in the storage version, unless Scenario.Resource names
// another (a CRD of the same kind, as a peer).
var Resource = schema.GroupVersionResource{Group: "etcdaas.dev", Version: "v1beta1", Resource: "etcdinstances"}

// Scenario sizes one run.
type Scenario struct {
	// Watchers is the number of watches opened, all through one client (one transport), as
	// a process with many informers or a test harness does.
	Watchers int
	// Objects is the number of ETCDInstances created once every watch is open.
	Objects int
	// Creators is the number of clients (each with its own transport) sharing the creates.
	Creators int
	// CreateRate caps the creates per second, all creators together; zero creates as fast as
	// the creators can.
	CreateRate float32
	// Deadline bounds the run from the first watch to the last expected event.
	Deadline time.Duration
	// Resource is the watched and created resource; empty means Resource. Its objects must
	// accept a spec with replicas.
	Resource schema.GroupVersionResource
	// WhileOpen, when set, runs after the burst while every watch is still open (to sample
	// the server's memory).
	WhileOpen func(ctx context.Context)
}

// Result is what one run observed.
type Result struct {
	// Watchers is the number of watches opened.
	Watchers int
	// Complete counts the watches that received an ADDED event for every created object.
	Complete int
	// Closed counts the watches the server ended before the run did.
	Closed int
	// MinEvents and MedianEvents are over the ADDED events each watch received.
	MinEvents, MedianEvents int
	// OpenTime is the time to open every watch; DeliveryTime runs from the first create to
	// the last event delivered (or to the deadline).
	OpenTime, DeliveryTime time.Duration
}

// String is the one-line summary tests and benchmarks print.
func (r Result) String() string {
	return fmt.Sprintf("%d/%d watchers received every event, %d closed early, events per watcher min %d median %d, watches opened in %s, burst delivered in %s",
		r.Complete, r.Watchers, r.Closed, r.MinEvents, r.MedianEvents, r.OpenTime.Round(time.Millisecond), r.DeliveryTime.Round(time.Millisecond))
}

// watcher counts the ADDED events of one watch.
type watcher struct {
	w      watch.Interface
	added  atomic.Int64
	closed atomic.Bool
}

// Run runs s in namespace: the watches go through watchConfig, the creates through
// createConfig. The namespace must not hold ETCDInstances already (a fresh one).
func Run(ctx context.Context, watchConfig, createConfig *rest.Config, namespace string, s Scenario) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, s.Deadline)
	defer cancel()
	res := Result{Watchers: s.Watchers}
	if s.Resource.Empty() {
		s.Resource = Resource
	}

	watchConfig = unlimited(watchConfig)
	client, err := dynamic.NewForConfig(watchConfig)
	if err != nil {
		return res, err
	}
	list, err := client.Resource(s.Resource).Namespace(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return res, fmt.Errorf("listing before the watches: %w", err)
	}
	start := time.Now()
	watchers, err := openWatches(ctx, client.Resource(s.Resource).Namespace(namespace), list.GetResourceVersion(), s.Watchers)
	defer func() {
		for _, w := range watchers {
			w.w.Stop()
		}
	}()
	if err != nil {
		return res, err
	}
	res.OpenTime = time.Since(start)

	burst := time.Now()
	if err := createBurst(ctx, createConfig, s, namespace); err != nil {
		return res, err
	}
	waitDelivered(ctx, watchers, int64(s.Objects))
	res.DeliveryTime = time.Since(burst)
	if s.WhileOpen != nil {
		s.WhileOpen(ctx)
	}
	summarize(&res, watchers, int64(s.Objects))
	return res, nil
}

// unlimited returns a copy of config without client-side rate limiting: the scenario measures
// the server.
func unlimited(config *rest.Config) *rest.Config {
	c := rest.CopyConfig(config)
	c.QPS, c.Burst = -1, 0
	return c
}

// openWatches opens n watches from resourceVersion, 50 at a time, and starts counting.
func openWatches(ctx context.Context, client dynamic.ResourceInterface, resourceVersion string, n int) ([]*watcher, error) {
	watchers := make([]*watcher, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	sem := make(chan struct{}, 50)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			w, err := client.Watch(ctx, metav1.ListOptions{ResourceVersion: resourceVersion})
			if err != nil {
				errs[i] = fmt.Errorf("watch %d: %w", i, err)
				return
			}
			watchers[i] = &watcher{w: w}
		}()
	}
	wg.Wait()
	opened := make([]*watcher, 0, n)
	for _, w := range watchers {
		if w != nil {
			opened = append(opened, w)
			go w.count()
		}
	}
	return opened, errors.Join(errs...)
}

// count reads the watch until it ends, counting ADDED events; an end the client did not ask
// for is recorded as closed.
func (w *watcher) count() {
	for ev := range w.w.ResultChan() {
		switch ev.Type {
		case watch.Added:
			w.added.Add(1)
		case watch.Error:
			w.closed.Store(true)
		}
	}
	w.closed.Store(true)
}

// createBurst creates s.Objects ETCDInstances of s.Resource in namespace from s.Creators
// clients at once, at most s.CreateRate per second when set.
func createBurst(ctx context.Context, config *rest.Config, s Scenario, namespace string) error {
	var next atomic.Int64
	limiter := flowcontrol.NewFakeAlwaysRateLimiter()
	if s.CreateRate > 0 {
		limiter = flowcontrol.NewTokenBucketRateLimiter(s.CreateRate, 1)
	}
	defer limiter.Stop()
	errs := make(chan error, s.Creators)
	for range s.Creators {
		client, err := dynamic.NewForConfig(unlimited(config))
		if err != nil {
			return err
		}
		go func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(s.Objects) {
					errs <- nil
					return
				}
				if err := limiter.Wait(ctx); err != nil {
					errs <- err
					return
				}
				if _, err := client.Resource(s.Resource).Namespace(namespace).Create(ctx, instance(s.Resource, int(i)), metav1.CreateOptions{}); err != nil {
					errs <- fmt.Errorf("create %d: %w", i, err)
					return
				}
			}
		}()
	}
	var all []error
	for range s.Creators {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}

// instance is the i-th object of the burst: a small ETCDInstance of resource.
func instance(resource schema.GroupVersionResource, i int) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": resource.GroupVersion().String(),
		"kind":       "ETCDInstance",
		"metadata":   map[string]any{"name": fmt.Sprintf("fanout-%04d", i)},
		"spec":       map[string]any{"replicas": int64(1)},
	}}
}

// waitDelivered returns once every open watch has counted want events, or ctx is done.
func waitDelivered(ctx context.Context, watchers []*watcher, want int64) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		done := true
		for _, w := range watchers {
			if w.added.Load() < want && !w.closed.Load() {
				done = false
				break
			}
		}
		if done {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// summarize fills res from the watchers' counts.
func summarize(res *Result, watchers []*watcher, want int64) {
	counts := make([]int, 0, len(watchers))
	for _, w := range watchers {
		n := w.added.Load()
		counts = append(counts, int(n))
		if n >= want {
			res.Complete++
		}
		if w.closed.Load() {
			res.Closed++
		}
	}
	if len(counts) == 0 {
		return
	}
	slices.Sort(counts)
	res.MinEvents = counts[0]
	res.MedianEvents = counts[len(counts)/2]
}

// TerminatedWatchers is the server's count of etcdinstances watchers it closed because they
// did not keep up (apiserver_terminated_watchers_total, read from /metrics with config, which
// must be allowed to read it).
func TerminatedWatchers(ctx context.Context, config *rest.Config) (float64, error) {
	return TerminatedWatchersOf(ctx, config, Resource.GroupResource())
}

// TerminatedWatchersOf is TerminatedWatchers for the watchers of resource (on kube-apiserver,
// those of a CRD).
func TerminatedWatchersOf(ctx context.Context, config *rest.Config, resource schema.GroupResource) (float64, error) {
	client, err := rest.HTTPClientFor(config)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(config.Host, "/")+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("reading /metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("reading /metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("parsing /metrics: %w", err)
	}
	var total float64
	for _, m := range families["apiserver_terminated_watchers_total"].GetMetric() {
		var got schema.GroupResource
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "group":
				got.Group = l.GetValue()
			case "resource":
				got.Resource = l.GetValue()
			}
		}
		if got == resource {
			total += m.GetCounter().GetValue()
		}
	}
	return total, nil
}
