// Package watchbuffer gives every watch a bounded queue of its own between the watch cache
// and the HTTP response that streams it.
//
// The watch cache hands each event to every watcher through a channel of about ten events
// and closes, as unresponsive, any watcher still full after a shared budget of at most
// 100 ms. Serializing an event is done once for all watchers; what remains per watcher is
// writing it to the client's HTTP/2 stream. During a burst of writes, a stream that stalls
// for a moment (its connection's writer is busy with the other streams, or the client reads
// slowly) therefore loses its watch although it would catch up a second later, and the
// client re-lists: with a thousand watchers that is a thousand re-lists at once. Behind
// kube-apiserver's aggregator the proxy absorbs such stalls; a server reached directly needs
// its own queue. The queue takes events from the cache as soon as they come and holds up to
// its size; a watcher that falls further behind stops being drained and the watch cache
// closes it as before.
package watchbuffer

import (
	"context"
	"sync"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/apiserver/pkg/registry/generic"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/storagebackend"
	"k8s.io/apiserver/pkg/storage/storagebackend/factory"
	"k8s.io/client-go/tools/cache"
)

// DefaultSize is the number of events a watch may fall behind before the watch cache's own
// limit applies.
const DefaultSize = 1000

// RESTOptionsGetter returns getter with every storage it configures wrapped by Storage.
// A size of 0 or less returns getter unchanged.
func RESTOptionsGetter(getter generic.RESTOptionsGetter, size int) generic.RESTOptionsGetter {
	if size <= 0 {
		return getter
	}
	return restOptionsGetter{getter: getter, size: size}
}

type restOptionsGetter struct {
	getter generic.RESTOptionsGetter
	size   int
}

// GetRESTOptions returns the wrapped getter's options with a decorator that buffers watches.
func (g restOptionsGetter) GetRESTOptions(resource schema.GroupResource, example runtime.Object) (generic.RESTOptions, error) {
	opts, err := g.getter.GetRESTOptions(resource, example)
	if err != nil {
		return opts, err
	}
	decorate := opts.Decorator
	if decorate == nil {
		decorate = generic.UndecoratedStorage
	}
	size := g.size
	opts.Decorator = func(config *storagebackend.ConfigForResource, resourcePrefix string,
		keyFunc func(obj runtime.Object) (string, error), newFunc, newListFunc func() runtime.Object,
		getAttrsFunc storage.AttrFunc, trigger storage.IndexerFuncs, indexers *cache.Indexers,
	) (storage.Interface, factory.DestroyFunc, error) {
		s, destroy, err := decorate(config, resourcePrefix, keyFunc, newFunc, newListFunc, getAttrsFunc, trigger, indexers)
		if err != nil {
			return nil, nil, err
		}
		return Storage(s, size), destroy, nil
	}
	return opts, nil
}

// Storage returns s with every watch it starts buffered by New.
func Storage(s storage.Interface, size int) storage.Interface {
	return bufferedStorage{Interface: s, size: size}
}

type bufferedStorage struct {
	storage.Interface
	size int
}

// Watch starts a watch on the wrapped storage and buffers it.
func (s bufferedStorage) Watch(ctx context.Context, key string, opts storage.ListOptions) (watch.Interface, error) {
	w, err := s.Interface.Watch(ctx, key, opts)
	if err != nil {
		return nil, err
	}
	return New(w, s.size), nil
}

// Watcher is a watch with a queue of up to a fixed number of events in front of it.
type Watcher struct {
	source watch.Interface
	size   int
	result chan watch.Event
	stop   chan struct{}
	once   sync.Once
}

// New returns source with a queue of up to size events (at least 1). The events come out
// in order; when source ends, the queued events are still delivered before the result
// channel closes.
func New(source watch.Interface, size int) *Watcher {
	w := &Watcher{source: source, size: max(size, 1), result: make(chan watch.Event), stop: make(chan struct{})}
	go w.run()
	return w
}

// ResultChan returns the events.
func (w *Watcher) ResultChan() <-chan watch.Event { return w.result }

// Stop stops the source watch and drops what is queued.
func (w *Watcher) Stop() {
	w.once.Do(func() {
		close(w.stop)
		w.source.Stop()
	})
}

// run moves events from the source to the queue as soon as they come, and from the queue to
// the result channel as fast as it is read. A full queue stops taking events.
func (w *Watcher) run() {
	defer close(w.result)
	in := w.source.ResultChan()
	var queue []watch.Event
	for in != nil || len(queue) > 0 {
		var out chan<- watch.Event
		var next watch.Event
		if len(queue) > 0 {
			out, next = w.result, queue[0]
		}
		receive := in
		if len(queue) >= w.size {
			receive = nil
		}
		select {
		case ev, ok := <-receive:
			if !ok {
				in = nil
				continue
			}
			queue = append(queue, ev)
		case out <- next:
			queue[0] = watch.Event{}
			queue = queue[1:]
			if len(queue) == 0 {
				// Let a burst's backing array go once it is delivered.
				queue = nil
			}
		case <-w.stop:
			return
		}
	}
}
