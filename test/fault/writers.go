// Package fault holds what the fault tests of every tier share: concurrent writers that
// create, update and delete ETCDInstances in both versions while something is killed or
// stopped under them, the ledger of what each writer was told, the check that every
// acknowledged write is there afterwards, and the classification of the errors the writers
// saw while the fault lasted.
package fault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1alpha1"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	versioned "github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned"
)

// StepAnnotation records how far its writer got with an object: "created", then "updated".
const StepAnnotation = "reliability.etcdaas.dev/step"

// Acked is what a writer was told about one object: present with a step annotation and the
// version it was written in, or deleted.
type Acked struct {
	Present bool
	Step    string
	Beta    bool
}

// Classify returns a short kind for an error a client may see while a server is down,
// starting or cut off from its storage (a connection error, an HTTP/2 stream the proxy in
// front reset when its upstream died mid-answer, a timeout, a 429 or a 5xx), or "" for
// anything else: a wrong answer, not a clean failure.
func Classify(err error) string {
	var netErr net.Error
	var streamErr http2.StreamError
	switch {
	case errors.As(err, &streamErr):
		return "stream reset"
	case utilnet.IsConnectionRefused(err):
		return "connection refused"
	case utilnet.IsConnectionReset(err), utilnet.IsProbableEOF(err), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	case errors.As(err, &netErr) && netErr.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case apierrors.IsTooManyRequests(err):
		return "HTTP 429"
	}
	if status, ok := err.(apierrors.APIStatus); ok && status.Status().Code >= 500 {
		return fmt.Sprintf("HTTP %d", status.Status().Code)
	}
	return ""
}

// Tally counts the errors writers saw, when, and the longest time one writer went without an
// acknowledged write.
type Tally struct {
	mu      sync.Mutex
	kinds   map[string]int
	unclean []string
	first   time.Time
	last    time.Time
	longest time.Duration
	acks    int
}

func (e *Tally) add(err error) {
	kind := Classify(err)
	now := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.first.IsZero() {
		e.first = now
	}
	e.last = now
	if kind == "" {
		e.unclean = append(e.unclean, err.Error())
		return
	}
	if e.kinds == nil {
		e.kinds = map[string]int{}
	}
	e.kinds[kind]++
}

func (e *Tally) acked(gap time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.acks++
	if gap > e.longest {
		e.longest = gap
	}
}

// Acks is the number of writes acknowledged so far.
func (e *Tally) Acks() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.acks
}

// Kinds returns how many errors of each clean kind the writers saw.
func (e *Tally) Kinds() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]int, len(e.kinds))
	for k, v := range e.kinds {
		out[k] = v
	}
	return out
}

// Total is the number of errors of any kind.
func (e *Tally) Total() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := len(e.unclean)
	for _, v := range e.kinds {
		n += v
	}
	return n
}

// Unclean returns the errors that were neither connection errors, timeouts, 429 nor 5xx.
func (e *Tally) Unclean() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.unclean...)
}

// Window returns when the first and the last error were seen (zero times when none was).
func (e *Tally) Window() (first, last time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.first, e.last
}

// LongestGap is the longest time one writer went without an acknowledged write.
func (e *Tally) LongestGap() time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.longest
}

// String summarizes the tally for a test log.
func (e *Tally) String() string {
	kinds := e.Kinds()
	names := make([]string, 0, len(kinds))
	for k := range kinds {
		names = append(names, k)
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, k := range names {
		parts = append(parts, fmt.Sprintf("%d %s", kinds[k], k))
	}
	if len(parts) == 0 {
		parts = append(parts, "none")
	}
	first, last := e.Window()
	window := ""
	if !first.IsZero() {
		window = fmt.Sprintf(" over %s", last.Sub(first).Round(time.Millisecond))
	}
	return fmt.Sprintf("errors %s%s, %d unclean; longest gap one writer saw %s",
		strings.Join(parts, ", "), window, len(e.Unclean()), e.LongestGap().Round(time.Millisecond))
}

// Writers are concurrent writers, half in v1alpha1 and half in v1beta1. Each creates its own
// objects, patches an annotation on each and deletes every third one, retrying every step
// until it is acknowledged: a create answered AlreadyExists, or a delete answered NotFound,
// after a failed attempt counts as the earlier attempt having landed. A writer gives up (and
// the test fails) on an error that is not a clean failure.
type Writers struct {
	cs     versioned.Interface
	ns     string
	stop   chan struct{}
	wg     sync.WaitGroup
	acked  []map[string]Acked
	ctx    context.Context
	cancel context.CancelFunc
	// Tally is what the writers saw.
	Tally *Tally
}

// StartWriters starts n writers on namespace ns; they run until Stop or until limit has
// passed, whichever comes first.
func StartWriters(cs versioned.Interface, ns string, n int, limit time.Duration) *Writers {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	w := &Writers{cs: cs, ns: ns, stop: make(chan struct{}), acked: make([]map[string]Acked, n),
		ctx: ctx, cancel: cancel, Tally: &Tally{kinds: map[string]int{}}}
	for i := range n {
		w.acked[i] = map[string]Acked{}
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.run(i, i%2 == 1)
		}()
	}
	return w
}

// Stop lets every writer finish its current step and waits for them; it returns an error
// when the time limit ended them instead.
func (w *Writers) Stop() error {
	close(w.stop)
	w.wg.Wait()
	defer w.cancel()
	if w.ctx.Err() != nil {
		return fmt.Errorf("writers did not finish within their time limit: %w", w.ctx.Err())
	}
	return nil
}

// Acknowledged returns every object a writer was told about, with what it was told.
func (w *Writers) Acknowledged() map[string]Acked {
	out := map[string]Acked{}
	for _, m := range w.acked {
		for name, a := range m {
			out[name] = a
		}
	}
	return out
}

// Verify reads back every acknowledged object through cs and reports each that is missing,
// present after an acknowledged delete, older than its acknowledged step or half written.
// It returns how many objects were acknowledged present and deleted.
func Verify(ctx context.Context, t testing.TB, cs versioned.Interface, ns string, acked map[string]Acked) (present, deleted int) {
	t.Helper()
	for name, want := range acked {
		checkAcked(ctx, t, cs, ns, name, want)
		if want.Present {
			present++
		} else {
			deleted++
		}
	}
	return present, deleted
}

func (w *Writers) retry(op func() error, landedAnyway func(error) bool, lastAck *time.Time) bool {
	failed := false
	for w.ctx.Err() == nil {
		err := op()
		if err == nil || (failed && landedAnyway(err)) {
			w.Tally.acked(time.Since(*lastAck))
			*lastAck = time.Now()
			return true
		}
		w.Tally.add(err)
		if Classify(err) == "" {
			return false
		}
		failed = true
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

func (w *Writers) run(idx int, beta bool) {
	acked := w.acked[idx]
	lastAck := time.Now()
	never := func(error) bool { return false }
	for i := 0; ; i++ {
		select {
		case <-w.stop:
			return
		default:
		}
		name := fmt.Sprintf("w%d-%d", idx, i)
		if !w.retry(func() error { return w.create(name, beta) }, apierrors.IsAlreadyExists, &lastAck) {
			return
		}
		acked[name] = Acked{Present: true, Step: "created", Beta: beta}
		if !w.retry(func() error { return w.annotate(name, beta) }, never, &lastAck) {
			return
		}
		acked[name] = Acked{Present: true, Step: "updated", Beta: beta}
		if i%3 != 2 {
			continue
		}
		if !w.retry(func() error { return w.delete(name, beta) }, apierrors.IsNotFound, &lastAck) {
			return
		}
		acked[name] = Acked{}
	}
}

func (w *Writers) create(name string, beta bool) error {
	meta := metav1.ObjectMeta{Name: name, Annotations: map[string]string{StepAnnotation: "created"}}
	if beta {
		_, err := w.cs.EtcdaasV1beta1().ETCDInstances(w.ns).Create(w.ctx, &v1beta1.ETCDInstance{
			ObjectMeta: meta, Spec: v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](3), Version: "3.6"},
		}, metav1.CreateOptions{})
		return err
	}
	_, err := w.cs.EtcdaasV1alpha1().ETCDInstances(w.ns).Create(w.ctx, &v1alpha1.ETCDInstance{
		ObjectMeta: meta, Spec: v1alpha1.ETCDInstanceSpec{Replicas: ptr.To[int32](1), WithTLSBundle: true},
	}, metav1.CreateOptions{})
	return err
}

// annotate sets the step annotation to "updated" with a JSON merge patch: idempotent, so a
// retry after an unacknowledged attempt is harmless.
func (w *Writers) annotate(name string, beta bool) error {
	patch := []byte(`{"metadata":{"annotations":{"` + StepAnnotation + `":"updated"}}}`)
	if beta {
		_, err := w.cs.EtcdaasV1beta1().ETCDInstances(w.ns).Patch(w.ctx, name, "application/merge-patch+json", patch, metav1.PatchOptions{})
		return err
	}
	_, err := w.cs.EtcdaasV1alpha1().ETCDInstances(w.ns).Patch(w.ctx, name, "application/merge-patch+json", patch, metav1.PatchOptions{})
	return err
}

func (w *Writers) delete(name string, beta bool) error {
	if beta {
		return w.cs.EtcdaasV1beta1().ETCDInstances(w.ns).Delete(w.ctx, name, metav1.DeleteOptions{})
	}
	return w.cs.EtcdaasV1alpha1().ETCDInstances(w.ns).Delete(w.ctx, name, metav1.DeleteOptions{})
}

// checkAcked reads one object back and compares it with what its writer was told.
func checkAcked(ctx context.Context, t testing.TB, cs versioned.Interface, ns, name string, want Acked) {
	t.Helper()
	obj, err := cs.EtcdaasV1beta1().ETCDInstances(ns).Get(ctx, name, metav1.GetOptions{})
	if !want.Present {
		if !apierrors.IsNotFound(err) {
			t.Errorf("%s: acknowledged delete, but Get: %v", name, err)
		}
		return
	}
	if err != nil {
		t.Errorf("%s: acknowledged %s, but Get: %v", name, want.Step, err)
		return
	}
	if got := obj.Annotations[StepAnnotation]; got != want.Step && !(want.Step == "created" && got == "updated") {
		t.Errorf("%s: acknowledged %s, found step %q", name, want.Step, got)
	}
	wantReplicas, wantVersion, wantTLS := int32(1), etcdaas.DefaultVersion, true
	if want.Beta {
		wantReplicas, wantVersion, wantTLS = 3, "3.6", false
	}
	if obj.Spec.Replicas == nil || *obj.Spec.Replicas != wantReplicas || obj.Spec.Version != wantVersion || (obj.Spec.TLS != nil && obj.Spec.TLS.Enabled) != wantTLS {
		t.Errorf("%s: half-written spec %+v", name, obj.Spec)
	}
}
