// Package controller runs ETCDInstances: a workqueue reconciler over the generated informers
// that drives a Backend one safe membership step at a time and reports status through the
// status subresource.
package controller

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	"github.com/etcdaas/etcdaas/pkg/controller/metrics"
	"github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned"
	"github.com/etcdaas/etcdaas/pkg/generated/informers/externalversions"
	listers "github.com/etcdaas/etcdaas/pkg/generated/listers/etcdaas/v1beta1"
)

// Finalizer is set on every ETCDInstance the controller runs, and removed once its members are
// stopped and their data removed.
const Finalizer = "etcdaas.dev/members"

// Options configure a Controller.
type Options struct {
	// Client talks to the etcdaas API.
	Client versioned.Interface
	// Backend runs the members.
	Backend backend.Backend
	// Namespace restricts the controller to one namespace; empty means all.
	Namespace string
	// Workers is the number of instances reconciled in parallel (default 2).
	Workers int
	// ResyncPeriod is the informer resync period (default 10 minutes).
	ResyncPeriod time.Duration
	// StepInterval is the delay before the next step while a change is under way (default 200ms).
	StepInterval time.Duration
	// HealthInterval is how often a converged instance's members are checked (default 15s).
	HealthInterval time.Duration
	// LeaderElection, when set, makes the controller act only while it holds a Lease.
	LeaderElection *LeaderElection
	// Events, when set, records what each step did as Events on the instance (see
	// NewEventRecorder).
	Events events.EventRecorder
	// Backups configures the scheduled backups of spec.backup; without a Dialer none run.
	Backups BackupOptions
	// Defrag configures when members are defragmented.
	Defrag DefragOptions
}

// LeaderElection configures leader election with a coordination.k8s.io Lease.
type LeaderElection struct {
	// Client talks to the cluster holding the Lease.
	Client kubernetes.Interface
	// Namespace and Name identify the Lease.
	Namespace, Name string
	// Identity is this controller's identity, unique among its replicas (such as the pod name).
	Identity string
	// LeaseDuration, RenewDeadline and RetryPeriod default to 15s, 10s and 2s.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// Controller reconciles ETCDInstances.
type Controller struct {
	opts     Options
	factory  externalversions.SharedInformerFactory
	informer cache.SharedIndexInformer
	lister   listers.ETCDInstanceLister
	queue    workqueue.TypedRateLimitingInterface[string]
	now      func() metav1.Time
	backups  *backups
	defrag   *defragmenter
	// acting is true while the workers may run: from the start of run to its end.
	acting atomic.Bool
}

// New builds a controller; Run starts it.
func New(opts Options) (*Controller, error) {
	if opts.Client == nil || opts.Backend == nil {
		return nil, errors.New("controller: a client and a backend are required")
	}
	opts = opts.withDefaults()
	metrics.Register()
	factory := externalversions.NewSharedInformerFactoryWithOptions(opts.Client, opts.ResyncPeriod, externalversions.WithNamespace(opts.Namespace))
	inf := factory.Etcdaas().V1beta1().ETCDInstances()
	c := &Controller{
		opts:     opts,
		factory:  factory,
		informer: inf.Informer(),
		lister:   inf.Lister(),
		queue:    newInstanceQueue(),
		now:      metav1.Now,
	}
	c.backups = newBackups(opts.Backups)
	c.backups.writeStatus = c.writeStatus
	c.backups.enqueue = c.queue.Add
	c.backups.record = func(inst *v1beta1.ETCDInstance, reason backend.EventReason, note string) {
		res := &backend.Result{}
		res.Record(reason, "%s", note)
		c.recordEvents(inst, res)
	}
	c.defrag = newDefragmenter(opts.Defrag, opts.Backend)
	if err := c.informer.AddIndexers(cache.Indexers{restoreSourceIndex: restoreSourceOf}); err != nil {
		return nil, err
	}
	// Handlers only enqueue keys: all the work happens in the workers.
	if _, err := c.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			c.enqueue(obj)
			c.enqueueRestoresFrom(nil, obj)
		},
		UpdateFunc: func(old, obj any) {
			c.enqueue(obj)
			c.enqueueRestoresFrom(old, obj)
		},
		DeleteFunc: c.enqueue,
	}); err != nil {
		return nil, err
	}
	return c, nil
}

// withDefaults returns o with its unset workers and intervals defaulted.
func (o Options) withDefaults() Options {
	if o.Workers <= 0 {
		o.Workers = 2
	}
	if o.ResyncPeriod == 0 {
		o.ResyncPeriod = 10 * time.Minute
	}
	if o.StepInterval == 0 {
		o.StepInterval = 200 * time.Millisecond
	}
	if o.HealthInterval == 0 {
		o.HealthInterval = 15 * time.Second
	}
	return o
}

// newInstanceQueue returns the queue of instance keys the workers take their work from.
func newInstanceQueue() workqueue.TypedRateLimitingInterface[string] {
	return workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedMaxOfRateLimiter(
			// Per instance: 100ms doubling up to 30s, so that a broken member is
			// retried promptly but not in a hot loop.
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 30*time.Second),
			// Overall: 10 qps with bursts of 100, as client-go's default.
			&workqueue.TypedBucketRateLimiter[string]{Limiter: rate.NewLimiter(rate.Limit(10), 100)},
		),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "etcdinstances"})
}

func (c *Controller) enqueue(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		utilruntime.HandleError(err)
		return
	}
	c.queue.Add(key)
}

// HasSynced reports whether the informer cache has synced, for readiness checks.
func (c *Controller) HasSynced() bool { return c.informer.HasSynced() }

// CheckSynced is etcdaas-controller's readiness check: it fails while the controller should
// act on instances (it runs without leader election, or leads) and its ETCDInstance cache has
// not synced yet. A standby replica waiting for the Lease is ready: it takes over by itself.
func (c *Controller) CheckSynced(*http.Request) error {
	if c.opts.LeaderElection != nil && !c.acting.Load() {
		return nil
	}
	if !c.informer.HasSynced() {
		return errors.New("the ETCDInstance cache has not synced yet")
	}
	return nil
}

// Run runs the controller until ctx ends, under leader election when configured. It returns
// once the workers have stopped; it does not close the backend. A leader releases its Lease
// only after its workers stopped, so that a standby never acts on an instance while a step
// of the old leader is still under way.
func (c *Controller) Run(ctx context.Context) error {
	le := c.opts.LeaderElection
	if le == nil {
		return c.run(ctx)
	}
	// The elector releases the Lease as soon as its context ends: that context ends when ctx
	// does only while not leading, and otherwise once the workers have stopped.
	electCtx, stopElecting := context.WithCancel(context.WithoutCancel(ctx))
	defer stopElecting()
	l := &leadership{c: c, ctx: ctx, le: le, stopElecting: stopElecting, ran: make(chan struct{})}
	stopWaiting := context.AfterFunc(ctx, l.stopUnlessLeading)
	defer stopWaiting()
	elector, err := leaderelection.NewLeaderElector(l.config())
	if err != nil {
		return err
	}
	elector.Run(electCtx)
	return l.wait()
}

// leadership is one Run under leader election: whether its workers started, and whether the
// elector already returned (no worker may start after that).
type leadership struct {
	c            *Controller
	ctx          context.Context // Run's
	le           *LeaderElection
	stopElecting context.CancelFunc

	mu            sync.Mutex
	leading, over bool
	ran           chan struct{} // closed once the workers stopped
	runErr        error
}

// config is the elector's configuration: le's Lease and durations (defaulted), released
// on cancel, with lead as the callback that starts the workers.
func (l *leadership) config() leaderelection.LeaderElectionConfig {
	le := l.le
	dur := func(d, def time.Duration) time.Duration {
		if d == 0 {
			return def
		}
		return d
	}
	return leaderelection.LeaderElectionConfig{
		Lock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: le.Namespace, Name: le.Name},
			Client:     le.Client.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: le.Identity},
		},
		LeaseDuration:   dur(le.LeaseDuration, 15*time.Second),
		RenewDeadline:   dur(le.RenewDeadline, 10*time.Second),
		RetryPeriod:     dur(le.RetryPeriod, 2*time.Second),
		ReleaseOnCancel: true,
		Name:            le.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: l.lead,
			OnStoppedLeading: func() {
				klog.InfoS("Stopped leading", "lease", le.Namespace+"/"+le.Name, "identity", le.Identity)
			},
		},
	}
}

// stopUnlessLeading stops electing when Run's ctx ends before the workers started; once they
// did, the elector stops (and releases the Lease) when they have stopped.
func (l *leadership) stopUnlessLeading() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.leading {
		l.stopElecting()
	}
}

// lead runs the workers while the Lease is held and Run's ctx lasts, then stops electing.
func (l *leadership) lead(leCtx context.Context) {
	defer close(l.ran)
	defer l.stopElecting()
	l.mu.Lock()
	if l.over {
		// The elector already returned (ctx ended as the Lease was acquired).
		l.mu.Unlock()
		return
	}
	l.leading = true
	l.mu.Unlock()
	klog.InfoS("Became leader", "lease", l.le.Namespace+"/"+l.le.Name, "identity", l.le.Identity)
	// The workers stop when the Lease is lost or when ctx ends.
	runCtx, cancel := context.WithCancel(leCtx)
	defer cancel()
	defer context.AfterFunc(l.ctx, cancel)()
	l.runErr = l.c.run(runCtx)
}

// wait is called once the elector returned, which it does without waiting for its
// OnStartedLeading: it waits for the workers, and reports why Run ends.
func (l *leadership) wait() error {
	l.mu.Lock()
	l.over = true
	started := l.leading
	l.mu.Unlock()
	if started {
		<-l.ran
	}
	if l.runErr == nil && l.ctx.Err() == nil {
		return errors.New("lost leadership")
	}
	return l.runErr
}

func (c *Controller) run(ctx context.Context) error {
	defer utilruntime.HandleCrash()
	c.acting.Store(true)
	defer c.acting.Store(false)
	c.factory.Start(ctx.Done())
	defer c.factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), c.informer.HasSynced) {
		c.queue.ShutDown()
		return fmt.Errorf("waiting for the ETCDInstance cache: %w", ctx.Err())
	}
	klog.InfoS("Controller started", "workers", c.opts.Workers)
	var wg sync.WaitGroup
	for range c.opts.Workers {
		wg.Go(func() {
			for c.processNext(ctx) {
			}
		})
	}
	<-ctx.Done()
	c.queue.ShutDown()
	wg.Wait()
	c.backups.wait()
	klog.InfoS("Controller stopped")
	return nil
}

func (c *Controller) processNext(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	start := time.Now()
	requeueAfter, err := c.reconcile(ctx, key)
	klog.V(4).InfoS("Reconciled ETCDInstance", "key", key, "duration", time.Since(start), "requeueAfter", requeueAfter, "err", err)
	switch {
	case errors.Is(err, errWaiting):
		// Unhealthy members: look again with a growing delay.
		metrics.ObserveReconcile(metrics.ResultWaiting, time.Since(start))
		c.queue.AddRateLimited(key)
	case err != nil && ctx.Err() == nil:
		metrics.ObserveReconcile(metrics.ResultError, time.Since(start))
		utilruntime.HandleErrorWithContext(ctx, err, "Reconciling ETCDInstance", "key", key)
		c.queue.AddRateLimited(key)
	case err != nil:
	default:
		metrics.ObserveReconcile(metrics.ResultSuccess, time.Since(start))
		c.queue.Forget(key)
		if requeueAfter > 0 {
			c.queue.AddAfter(key, requeueAfter)
		}
	}
	return true
}

// reconcile handles one instance; it returns when to look at it again.
func (c *Controller) reconcile(ctx context.Context, key string) (time.Duration, error) {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil // an unusable key cannot get better
	}
	cached, err := c.lister.ETCDInstances(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		c.forget(namespace, name)
		metrics.ForgetInstance(namespace, name)
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	inst := cached.DeepCopy()
	if inst.DeletionTimestamp != nil {
		c.forget(namespace, name)
		return 0, c.reconcileDelete(ctx, inst)
	}
	inst, err = c.ensureFinalizer(ctx, inst)
	if err != nil || inst == nil {
		return 0, err
	}
	after, err := c.syncAndReport(ctx, inst)
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	return earliest(after, c.backups.step(ctx, inst)), err
}

// forget drops what the controller and its backend remember in memory of the instance
// namespace/name: its backup schedule, its defragmentation round, the health records of its
// members. An instance that is gone, or going, needs none of it, and a new instance of the
// same name must start afresh.
func (c *Controller) forget(namespace, name string) {
	key := namespace + "/" + name
	c.backups.forget(key)
	c.defrag.forget(key)
	if f, ok := c.opts.Backend.(backend.Forgetter); ok {
		f.Forget(namespace, name)
	}
}

// earliest is when to look at an instance again given the reconcile's choice and the next
// scheduled backup; zero means "no need" for either.
func earliest(after, backupDue time.Duration) time.Duration {
	if backupDue > 0 && (after == 0 || backupDue < after) {
		return backupDue
	}
	return after
}

// reconcileDelete reports the Deleting phase, has the backend delete the members and then
// removes the finalizer. Without the finalizer there is nothing left to do.
func (c *Controller) reconcileDelete(ctx context.Context, inst *v1beta1.ETCDInstance) error {
	if !slices.Contains(inst.Finalizers, Finalizer) {
		return nil
	}
	key := cache.MetaObjectToName(inst).String()
	if inst.Status.Phase != v1beta1.PhaseDeleting {
		if err := c.writeStatus(ctx, inst, func(latest *v1beta1.ETCDInstance) v1beta1.ETCDInstanceStatus {
			return deletingStatus(latest, c.now())
		}); err != nil && !apierrors.IsNotFound(err) {
			klog.V(2).InfoS("Could not report the Deleting phase", "key", key, "err", err)
		}
	}
	if err := c.opts.Backend.Delete(ctx, inst); err != nil {
		return fmt.Errorf("deleting the members of %s: %w", key, err)
	}
	// Another finalizer keeps the object after ours goes: its status must not go on listing
	// members (and client URLs) that no longer exist.
	if err := c.writeStatus(ctx, inst, func(latest *v1beta1.ETCDInstance) v1beta1.ETCDInstanceStatus {
		return membersDeletedStatus(latest, c.now())
	}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("reporting that the members of %s are deleted: %w", key, err)
	}
	client := c.opts.Client.EtcdaasV1beta1().ETCDInstances(inst.Namespace)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		latest, err := client.Get(ctx, inst.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if latest.UID != inst.UID || !slices.Contains(latest.Finalizers, Finalizer) {
			return nil
		}
		latest.Finalizers = slices.DeleteFunc(latest.Finalizers, func(f string) bool { return f == Finalizer })
		_, err = client.Update(ctx, latest, metav1.UpdateOptions{})
		return err
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err == nil {
		metrics.ForgetInstance(inst.Namespace, inst.Name)
		klog.InfoS("Deleted the members of ETCDInstance", "key", key)
	}
	return err
}

// ensureFinalizer adds the finalizer to inst unless it has it, and returns the instance to
// sync: inst itself, or the updated object. It returns nil when the instance is gone or
// being deleted meanwhile: the next event handles it.
func (c *Controller) ensureFinalizer(ctx context.Context, inst *v1beta1.ETCDInstance) (*v1beta1.ETCDInstance, error) {
	if slices.Contains(inst.Finalizers, Finalizer) {
		return inst, nil
	}
	client := c.opts.Client.EtcdaasV1beta1().ETCDInstances(inst.Namespace)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		latest, err := client.Get(ctx, inst.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if latest.UID != inst.UID || latest.DeletionTimestamp != nil {
			return nil
		}
		if !slices.Contains(latest.Finalizers, Finalizer) {
			latest.Finalizers = append(latest.Finalizers, Finalizer)
			if latest, err = client.Update(ctx, latest, metav1.UpdateOptions{}); err != nil {
				return err
			}
		}
		inst = latest
		return nil
	})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("adding the finalizer to %s: %w", cache.MetaObjectToName(inst), err)
	}
	if inst.DeletionTimestamp != nil || !slices.Contains(inst.Finalizers, Finalizer) {
		return nil, nil
	}
	return inst, nil
}

// syncAndReport has the backend take one step, writes the status it leads to and returns
// when to look at the instance again.
func (c *Controller) syncAndReport(ctx context.Context, inst *v1beta1.ETCDInstance) (time.Duration, error) {
	if _, requested := inst.Annotations[etcdaas.RecoverRequestedAnnotation]; requested {
		if err := c.recoverAndReport(ctx, inst); err != nil {
			return 0, err
		}
		return c.opts.StepInterval, nil
	}
	res, syncErr := c.opts.Backend.Sync(ctx, inst)
	defragmented, defragErr := c.defrag.step(ctx, inst, res, syncErr)
	c.recordEvents(inst, res)
	if res != nil {
		metrics.ObserveMembers(inst.Namespace, inst.Name, res.Members, backend.QuotaBackendBytes(c.opts.Backend, inst))
	}
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	previous := inst // the instance whose status the write replaced
	if err := c.writeStatus(ctx, inst, func(latest *v1beta1.ETCDInstance) v1beta1.ETCDInstanceStatus {
		previous = latest
		// Status describes the generation acted on, with the latest conditions as the base.
		acted := latest.DeepCopy()
		acted.Generation = inst.Generation
		acted.Spec = inst.Spec
		return computeStatus(acted, res, syncErr, c.now())
	}); err != nil {
		if apierrors.IsNotFound(err) {
			return 0, nil
		}
		return 0, fmt.Errorf("updating the status of %s: %w", cache.MetaObjectToName(inst), err)
	}
	// Against the status written over, not the cached one: a Sync of a copy older than the
	// status an earlier Sync wrote (not in the cache yet) reports the same failure once.
	c.notePermanentFailure(previous, syncErr)
	c.noteQuorumLoss(previous, res)
	c.noteBlocked(previous, res)
	c.noteRefused(previous, res)
	if pe, ok := backend.IsPermanent(syncErr); ok {
		klog.InfoS("ETCDInstance cannot be reconciled", "key", cache.MetaObjectToName(inst).String(), "err", syncErr, "retryAfter", pe.RetryAfter)
	}
	if defragErr != nil {
		return 0, fmt.Errorf("defragmenting a member of %s: %w", cache.MetaObjectToName(inst), defragErr)
	}
	if err := c.finishDefragRequest(ctx, inst, res); err != nil {
		return 0, fmt.Errorf("removing the defragmentation request of %s: %w", cache.MetaObjectToName(inst), err)
	}
	if defragmented {
		return c.opts.StepInterval, nil // the next member, once the cluster is healthy again
	}
	return c.requeueAfter(res, syncErr)
}

// requeueAfter chooses when to look at an instance again after a Sync that returned res and
// syncErr: after a permanent error, after its RetryAfter or never (a spec change brings it
// back); with backoff after an error, while work is stalled or blocked or while members are unhealthy
// and no step is under way; after HealthInterval once converged, after NoSpaceInterval (or
// HealthInterval if shorter) while members are out of space and nothing else is wrong, and
// after StepInterval while a change is under way (or the step's own StepWait, when longer).
func (c *Controller) requeueAfter(res *backend.Result, syncErr error) (time.Duration, error) {
	if pe, ok := backend.IsPermanent(syncErr); ok {
		return pe.RetryAfter, nil
	}
	if syncErr != nil {
		return 0, syncErr
	}
	if res != nil && res.Converged {
		return c.opts.HealthInterval, nil
	}
	if waitingForSpace(res) {
		// Compaction frees the space and sends no event: look again at a steady pace rather
		// than with a backoff that grows while the alarm lasts.
		return min(c.opts.HealthInterval, NoSpaceInterval), nil
	}
	if res != nil && (res.Stalled != "" || res.Blocked != "" || (res.Unhealthy != "" && res.Step == "")) {
		return 0, errWaiting
	}
	if res != nil && res.StepWait > c.opts.StepInterval {
		return res.StepWait, nil
	}
	return c.opts.StepInterval, nil
}

// errWaiting means the instance waits for its members to be healthy; it is retried with
// backoff and not logged as an error.
var errWaiting = errors.New("waiting for members to be healthy")

// writeStatus writes the status computed from the latest object through the status
// subresource, re-reading and retrying on conflicts; it skips the write when nothing changed.
func (c *Controller) writeStatus(ctx context.Context, inst *v1beta1.ETCDInstance, compute func(latest *v1beta1.ETCDInstance) v1beta1.ETCDInstanceStatus) error {
	client := c.opts.Client.EtcdaasV1beta1().ETCDInstances(inst.Namespace)
	latest := inst
	first := true
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if !first {
			var err error
			if latest, err = client.Get(ctx, inst.Name, metav1.GetOptions{}); err != nil {
				return err
			}
			if latest.UID != inst.UID {
				return apierrors.NewNotFound(v1beta1.Resource("etcdinstances"), inst.Name)
			}
		}
		first = false
		status := compute(latest)
		if statusEqual(latest.Status, status) {
			return nil
		}
		updated := latest.DeepCopy()
		updated.Status = status
		_, err := client.UpdateStatus(ctx, updated, metav1.UpdateOptions{})
		return err
	})
}

// statusEqual compares statuses semantically, transition times included: computeStatus keeps
// the lastTransitionTime of unchanged conditions (SetStatusCondition does), so a status that
// changed nothing else compares equal and is not written.
func statusEqual(a, b v1beta1.ETCDInstanceStatus) bool {
	return apiequality.Semantic.DeepEqual(a, b)
}
