package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/backup"
	"github.com/etcdaas/etcdaas/pkg/backup/schedule"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	"github.com/etcdaas/etcdaas/pkg/controller/metrics"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
)

// Reasons of the BackupSucceeded condition.
const (
	ReasonBackupCompleted        = "BackupCompleted"
	ReasonBackupFailed           = "BackupFailed"
	ReasonCredentialsUnavailable = "CredentialsUnavailable"
	ReasonDestinationUnavailable = "DestinationUnavailable"
	ReasonInvalidSchedule        = "InvalidSchedule"
)

// BackupOptions configure scheduled backups (spec.backup).
type BackupOptions struct {
	// Dialer reaches the members of an instance; nil turns scheduled backups off.
	Dialer etcdcluster.Dialer
	// Resolver builds an instance's destination.
	Resolver backup.Resolver
	// Retry is the backoff after a failed backup (default schedule.DefaultRetry).
	Retry schedule.Retry
	// Timeout bounds one backup, and then the deletion of the backups beyond spec.backup.keep
	// (default one hour each).
	Timeout time.Duration
	// MaxConcurrent bounds the backups running at once, and with them the memory their
	// uploads hold (default 2).
	MaxConcurrent int
}

// backups runs the scheduled backups of instances, each in a goroutine of its own so that
// a long snapshot never holds a reconcile worker.
type backups struct {
	opts        BackupOptions
	now         func() time.Time
	writeStatus func(ctx context.Context, inst *v1beta1.ETCDInstance, compute func(*v1beta1.ETCDInstance) v1beta1.ETCDInstanceStatus) error
	enqueue     func(key string)
	// record records an Event on the instance: a Warning when backups start failing (or fail
	// for another reason), and one when they succeed again.
	record func(inst *v1beta1.ETCDInstance, reason backend.EventReason, note string)
	slots  chan struct{}

	mu sync.Mutex
	// running holds the backup in progress of each instance; uids the UID each instance
	// key was last scheduled under, so that a deletion seen only as "not found" (or a new
	// instance of the same name) still stops the old instance's schedule.
	running  map[types.UID]*runningBackup
	uids     map[string]types.UID
	failures map[types.UID]int
	// attempted and succeeded remember what this controller did, for when its informer
	// cache does not show its own status writes yet.
	attempted, succeeded map[types.UID]time.Time
	wg                   sync.WaitGroup
}

func newBackups(opts BackupOptions) *backups {
	if opts.Retry == (schedule.Retry{}) {
		opts.Retry = schedule.DefaultRetry
	}
	if opts.Timeout == 0 {
		opts.Timeout = time.Hour
	}
	if opts.MaxConcurrent <= 0 {
		opts.MaxConcurrent = 2
	}
	return &backups{opts: opts, now: time.Now, slots: make(chan struct{}, opts.MaxConcurrent),
		running: map[types.UID]*runningBackup{}, uids: map[string]types.UID{}, failures: map[types.UID]int{},
		attempted: map[types.UID]time.Time{}, succeeded: map[types.UID]time.Time{}}
}

// step starts inst's backup when it is due and returns how long until the next one is;
// zero means nothing is scheduled. Once spec.backup is removed, a backup still running is
// cancelled (it reports nothing) and the schedule's state forgotten.
func (b *backups) step(ctx context.Context, inst *v1beta1.ETCDInstance) time.Duration {
	spec := inst.Spec.Backup
	if spec == nil {
		b.forget(instanceKey(inst))
		metrics.ForgetBackupSchedule(inst.Namespace, inst.Name)
		return 0
	}
	if b.opts.Dialer == nil || inst.DeletionTimestamp != nil {
		return 0
	}
	sched, err := schedule.Parse(spec.Schedule)
	if err != nil {
		// Validation refuses such schedules; one stored before it did is reported, not run.
		metrics.ForgetBackupSchedule(inst.Namespace, inst.Name)
		b.report(ctx, inst, nil, metav1.ConditionFalse, ReasonInvalidSchedule, err.Error())
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	key := instanceKey(inst)
	if old, ok := b.uids[key]; ok && old != inst.UID {
		b.forgetLocked(old) // an earlier instance of this name, deleted meanwhile
	}
	b.uids[key] = inst.UID
	metrics.ObserveBackupSchedule(inst.Namespace, inst.Name, sched.Next(b.lastSuccess(inst).UTC()))
	if b.running[inst.UID] != nil {
		return 0 // the backup's end enqueues the instance
	}
	now := b.now()
	due := schedule.Next(sched, b.state(inst), b.opts.Retry)
	if due.After(now) {
		return due.Sub(now)
	}
	runCtx, cancel := context.WithCancel(ctx)
	current := &runningBackup{cancel: cancel}
	b.running[inst.UID] = current
	b.attempted[inst.UID] = now
	b.wg.Go(func() {
		defer cancel()
		b.run(runCtx, current, inst.DeepCopy(), now)
	})
	return 0
}

// runningBackup is a backup in progress; cancel stops it when its instance goes away.
type runningBackup struct {
	cancel context.CancelFunc
}

func instanceKey(inst *v1beta1.ETCDInstance) string { return inst.Namespace + "/" + inst.Name }

// state is what schedule.Next needs. A scheduled attempt newer than the last success
// counts as failed, so that a backup cut short by a controller restart is retried.
func (b *backups) state(inst *v1beta1.ETCDInstance) schedule.State {
	st := schedule.State{Created: inst.CreationTimestamp.Time, Failures: b.failures[inst.UID], LastAttempt: b.attempted[inst.UID]}
	if status := inst.Status.Backup; status != nil {
		if t := status.LastScheduleTime; t != nil && t.After(st.LastAttempt) {
			st.LastAttempt = t.Time
		}
	}
	succeeded := b.succeededAt(inst)
	if st.Failures == 0 && !st.LastAttempt.IsZero() && succeeded.Before(st.LastAttempt) {
		st.Failures = 1
	}
	return st
}

// succeededAt is when inst's last backup succeeded, as this controller saw it or the status
// says; zero when none did. b.mu is held.
func (b *backups) succeededAt(inst *v1beta1.ETCDInstance) time.Time {
	succeeded := b.succeeded[inst.UID]
	if status := inst.Status.Backup; status != nil {
		if t := status.LastSuccessfulTime; t != nil && t.After(succeeded) {
			succeeded = t.Time
		}
	}
	return succeeded
}

// lastSuccess is what the next scheduled backup counts from: the last successful backup,
// or the instance's creation before the first. b.mu is held.
func (b *backups) lastSuccess(inst *v1beta1.ETCDInstance) time.Time {
	if t := b.succeededAt(inst); !t.IsZero() {
		return t
	}
	return inst.CreationTimestamp.Time
}

// run takes one backup and reports it, then prunes old ones after a success. It stops,
// reporting nothing more, when ctx ends: the controller stops or the instance was forgotten.
func (b *backups) run(ctx context.Context, current *runningBackup, inst *v1beta1.ETCDInstance, started time.Time) {
	defer b.finish(current, inst)
	startedAt := metav1.NewTime(started)
	b.report(ctx, inst, func(s *v1beta1.BackupStatus) { s.LastScheduleTime = &startedAt }, "", "", "")

	select {
	case b.slots <- struct{}{}:
		defer func() { <-b.slots }()
	case <-ctx.Done():
		return
	}
	takeStart := time.Now()
	info, dest, reason, err := b.take(ctx, inst)
	took := time.Since(takeStart)
	if ctx.Err() != nil {
		return // stopping (the next controller retries it) or the instance is gone
	}
	n, ok := b.count(current, inst, reason, err)
	if !ok {
		return // forgotten while it ended: nothing of it may be remembered or reported
	}
	if err != nil {
		b.reportFailure(ctx, inst, started, n.failures, n.again, reason, err)
		return
	}
	b.reportSuccess(ctx, inst, info, dest, took, n.failedBefore)
}

// finish ends run: unless inst was forgotten meanwhile, it is no longer running and is
// queued again for its next backup.
func (b *backups) finish(current *runningBackup, inst *v1beta1.ETCDInstance) {
	b.mu.Lock()
	forgotten := b.running[inst.UID] != current
	if !forgotten {
		delete(b.running, inst.UID)
	}
	b.mu.Unlock()
	if !forgotten {
		b.enqueue(instanceKey(inst))
	}
}

// attemptCount is what count tells of an attempt that ended.
type attemptCount struct {
	failures     int  // failures in a row, this attempt included (0 after a success)
	failedBefore bool // the previous attempt failed
	again        bool // ... with the reason this one failed for
}

// count records how an attempt that ended with reason and err went: the failures in a row, or
// the time of a success. ok is false, and nothing recorded, when inst was forgotten meanwhile.
func (b *backups) count(current *runningBackup, inst *v1beta1.ETCDInstance, reason string, err error) (n attemptCount, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.running[inst.UID] != current {
		return n, false
	}
	// Failures before this attempt: this controller's count, or (after a restart) the
	// condition a previous one left, with the reason it gave.
	failedBefore := b.failures[inst.UID]
	cond := meta.FindStatusCondition(inst.Status.Conditions, etcdaas.ConditionBackupSucceeded)
	if failedBefore == 0 && cond != nil && cond.Status == metav1.ConditionFalse {
		failedBefore = 1
	}
	if err != nil {
		b.failures[inst.UID]++
	} else {
		delete(b.failures, inst.UID)
		b.succeeded[inst.UID] = b.now()
	}
	n.failures = b.failures[inst.UID]
	n.failedBefore = failedBefore > 0
	n.again = n.failedBefore && cond != nil && cond.Reason == reason
	return n, true
}

// reportSuccess reports the backup info taken in took to dest, after pruning the backups
// beyond the ones the spec keeps; failedBefore says the previous attempt failed, which an
// Event notes.
func (b *backups) reportSuccess(ctx context.Context, inst *v1beta1.ETCDInstance, info backup.Info, dest backup.Destination, took time.Duration, failedBefore bool) {
	metrics.ObserveBackupSuccess(inst.Namespace, inst.Name, info.Time, took, info.Size)
	msg := fmt.Sprintf("%s: %d bytes at revision %d in %s", info.Key, info.Size, info.Revision, dest)
	keep := int(v1beta1.DefaultBackupKeep)
	if inst.Spec.Backup.Keep != nil {
		keep = int(*inst.Spec.Backup.Keep)
	}
	// Retention is bounded like the backup: a store that stops answering must not hold the
	// instance's schedule (its next backup waits for this one to end).
	pruneCtx, cancelPrune := context.WithTimeout(ctx, b.opts.Timeout)
	deleted, pruneErr := backup.Prune(pruneCtx, dest, info, keep)
	cancelPrune()
	if pruneErr != nil {
		msg += fmt.Sprintf("; deleting backups beyond the newest %d failed: %v", keep, pruneErr)
	}
	klog.InfoS("Backup completed", "instance", instanceKey(inst), "key", info.Key, "bytes", info.Size, "revision", info.Revision, "deleted", deleted, "pruneErr", pruneErr)
	if failedBefore {
		b.event(inst, backend.ReasonBackupSucceeded, "Scheduled backups succeed again: "+msg)
	}
	completed := metav1.NewTime(info.Time)
	b.report(ctx, inst, func(s *v1beta1.BackupStatus) {
		s.LastSuccessfulTime = &completed
		s.LastBackup = &v1beta1.BackupInfo{Key: info.Key, Revision: info.Revision, SizeBytes: info.Size, SHA256: info.SHA256,
			EtcdVersion: info.EtcdVersion, CompletionTime: completed, InstanceUID: info.InstanceUID}
	}, metav1.ConditionTrue, ReasonBackupCompleted, msg)
}

// reportFailure reports a failed backup, the failures-th in a row: in the BackupSucceeded
// condition, and as a BackupFailed Event unless the previous attempt failed for the same
// reason. One Event per attempt (every minute for some schedules) would bury the instance's
// other Events, such as a later QuorumLost, under a storm of BackupFailed.
func (b *backups) reportFailure(ctx context.Context, inst *v1beta1.ETCDInstance, started time.Time, failures int, again bool, reason string, err error) {
	metrics.ObserveBackupFailure(inst.Namespace, inst.Name)
	klog.InfoS("Backup failed", "instance", instanceKey(inst), "failures", failures, "err", err)
	msg := fmt.Sprintf("backup started %s failed (attempt %d, retried with backoff): %v", started.UTC().Format(time.RFC3339), failures, err)
	if !again {
		note := "Scheduled " + msg
		if reason != ReasonBackupFailed {
			note += " (" + reason + ")"
		}
		b.event(inst, backend.ReasonBackupFailed, note)
	}
	b.report(ctx, inst, nil, metav1.ConditionFalse, reason, msg)
}

// take streams a snapshot of the best member into the instance's destination.
func (b *backups) take(ctx context.Context, inst *v1beta1.ETCDInstance) (backup.Info, backup.Destination, string, error) {
	ctx, cancel := context.WithTimeout(ctx, b.opts.Timeout)
	defer cancel()
	dest, err := b.opts.Resolver.Destination(ctx, inst.Namespace, inst.Name, inst.Spec.Backup.Destination)
	if err != nil {
		// A Secret the Kubernetes API cannot give for now is an error about credentials too:
		// the credentials may be fine, the destination is what cannot be used for now.
		reason := ReasonDestinationUnavailable
		if errors.Is(err, backup.ErrCredentials) && !errors.Is(err, backup.ErrStoreUnavailable) {
			reason = ReasonCredentialsUnavailable
		}
		return backup.Info{}, nil, reason, err
	}
	access, err := b.opts.Dialer.Access(ctx, inst.Namespace, inst.Name)
	if err != nil {
		return backup.Info{}, dest, ReasonBackupFailed, fmt.Errorf("reaching the members: %w", err)
	}
	snap, err := etcdcluster.OpenBestSnapshot(ctx, access)
	if err != nil {
		return backup.Info{}, dest, ReasonBackupFailed, fmt.Errorf("no member can take a snapshot: %w", err)
	}
	defer func() { _ = snap.Close() }()
	info, err := backup.Take(ctx, dest, backup.Snapshot{Reader: snap, Revision: snap.Revision, EtcdVersion: snap.Version}, string(inst.UID), b.now)
	if err != nil {
		return backup.Info{}, dest, ReasonBackupFailed, err
	}
	return info, dest, "", nil
}

// event records an Event on inst, when a recorder is set.
func (b *backups) event(inst *v1beta1.ETCDInstance, reason backend.EventReason, note string) {
	if b.record != nil {
		b.record(inst, reason, note)
	}
}

// report updates status.backup with update (when not nil) and, when reason is set and the
// instance still has spec.backup, the BackupSucceeded condition.
func (b *backups) report(ctx context.Context, inst *v1beta1.ETCDInstance, update func(*v1beta1.BackupStatus), st metav1.ConditionStatus, reason, msg string) {
	msg = conditionMessage(msg)
	now := metav1.NewTime(b.now())
	err := b.writeStatus(ctx, inst, func(latest *v1beta1.ETCDInstance) v1beta1.ETCDInstanceStatus {
		status := *latest.Status.DeepCopy()
		if update != nil {
			if status.Backup == nil {
				status.Backup = &v1beta1.BackupStatus{}
			}
			update(status.Backup)
		}
		// A backup that ended after spec.backup was removed does not bring the condition back.
		if reason != "" && latest.Spec.Backup != nil {
			meta.SetStatusCondition(&status.Conditions, metav1.Condition{Type: etcdaas.ConditionBackupSucceeded, Status: st,
				Reason: reason, Message: msg, ObservedGeneration: latest.Generation, LastTransitionTime: now})
		}
		return status
	})
	if err != nil && ctx.Err() == nil {
		klog.InfoS("Could not report a backup in the status", "instance", inst.Namespace+"/"+inst.Name, "err", err)
	}
}

// forget stops the schedule of the instance namespace/name (deleted, or being deleted): its
// running backup is cancelled and what is remembered of it dropped, so that an instance
// created later under the same name starts a schedule of its own.
func (b *backups) forget(key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if uid, ok := b.uids[key]; ok {
		b.forgetLocked(uid)
		delete(b.uids, key)
	}
}

// forgetLocked cancels the running backup of uid and drops its state; b.mu is held.
func (b *backups) forgetLocked(uid types.UID) {
	if r := b.running[uid]; r != nil {
		r.cancel()
		delete(b.running, uid)
	}
	delete(b.failures, uid)
	delete(b.attempted, uid)
	delete(b.succeeded, uid)
}

// wait waits for the running backups to end (they end with the context they run under).
func (b *backups) wait() { b.wg.Wait() }
