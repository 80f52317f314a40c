package watchbuffer

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/apiserver/pkg/storage"
)

func event(i int) watch.Event {
	return watch.Event{Type: watch.Added, Object: &metav1.Status{Message: fmt.Sprint(i)}}
}

func message(t *testing.T, ev watch.Event) string {
	t.Helper()
	s, ok := ev.Object.(*metav1.Status)
	if !ok {
		t.Fatalf("unexpected object %T", ev.Object)
	}
	return s.Message
}

// A burst larger than the source's own channel is taken at once, delivered in order, and the
// result channel closes after the last queued event when the source ends.
func TestBurstIsQueuedInOrderAndDrainedAfterSourceEnds(t *testing.T) {
	source := watch.NewFake() // unbuffered: each Add returns only once the buffer took it
	w := New(source, 100)
	for i := range 50 {
		source.Add(event(i).Object)
	}
	source.Stop()
	i := 0
	for ev := range w.ResultChan() {
		if got, want := message(t, ev), fmt.Sprint(i); got != want {
			t.Fatalf("event %d is %q, want %q", i, got, want)
		}
		i++
	}
	if i != 50 {
		t.Fatalf("got %d events, want 50", i)
	}
}

// A full queue stops taking events, so the watch cache's own limit applies to a watcher that
// falls further behind than the queue's size.
func TestFullQueueStopsTakingEvents(t *testing.T) {
	source := watch.NewFake()
	w := New(source, 3)
	defer w.Stop()
	for i := range 3 {
		source.Add(event(i).Object)
	}
	taken := make(chan struct{})
	go func() {
		defer close(taken)
		source.Add(event(3).Object)
	}()
	select {
	case <-taken:
		t.Fatal("a fourth event was taken while three were queued and none read")
	case <-time.After(200 * time.Millisecond):
	}
	if got := message(t, <-w.ResultChan()); got != "0" {
		t.Fatalf("first event %q, want 0", got)
	}
	<-taken // reading one makes room for the fourth
}

// Stop stops the source and closes the result channel although events are queued.
func TestStopStopsSourceAndClosesResult(t *testing.T) {
	source := watch.NewFake()
	w := New(source, 10)
	source.Add(event(0).Object)
	w.Stop()
	w.Stop() // idempotent
	if !source.IsStopped() {
		t.Fatal("source not stopped")
	}
	for range w.ResultChan() {
	}
}

// fakeStorage returns the given watch from Watch.
type fakeStorage struct {
	storage.Interface
	w watch.Interface
}

func (f fakeStorage) Watch(context.Context, string, storage.ListOptions) (watch.Interface, error) {
	return f.w, nil
}

func TestStorageBuffersWatches(t *testing.T) {
	source := watch.NewFake()
	s := Storage(fakeStorage{w: source}, 5)
	w, err := s.Watch(context.Background(), "/registry/x", storage.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if _, ok := w.(*Watcher); !ok {
		t.Fatalf("Watch returned %T, want a *Watcher", w)
	}
	for i := range 5 {
		source.Add(event(i).Object) // would block without the queue: nobody reads yet
	}
}
