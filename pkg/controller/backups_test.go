package controller

import (
	"context"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/backup"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
)

// blockingDialer holds every backup in Access until its context ends, and says which
// instance UID each call was for and when it was cancelled.
type blockingDialer struct {
	started   chan string
	cancelled chan string
}

func (d *blockingDialer) Access(ctx context.Context, _, _ string) (*etcdcluster.Access, error) {
	uid, _ := ctx.Value(uidKey{}).(string)
	d.started <- uid
	<-ctx.Done()
	d.cancelled <- uid
	return nil, ctx.Err()
}

type uidKey struct{}

// TestForgetStopsTheScheduleOfADeletedInstance: deleting an instance cancels its running
// backup, which then reports nothing; an instance created again under the same name gets a
// schedule of its own, and one seen under a new UID before the deletion was seen stops the
// old one's backup too.
func TestForgetStopsTheScheduleOfADeletedInstance(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dialer := &blockingDialer{started: make(chan string, 4), cancelled: make(chan string, 4)}
	b := newBackups(BackupOptions{Dialer: dialer, Resolver: backup.Resolver{LocalRoot: t.TempDir()}})
	now := time.Date(2026, 11, 29, 3, 0, 30, 0, time.UTC)
	b.now = func() time.Time { return now }
	var mu sync.Mutex
	var reports []string // reason of each condition reported, by UID
	var enqueued []string
	b.writeStatus = func(_ context.Context, inst *v1beta1.ETCDInstance, compute func(*v1beta1.ETCDInstance) v1beta1.ETCDInstanceStatus) error {
		st := compute(inst)
		mu.Lock()
		defer mu.Unlock()
		for _, c := range st.Conditions {
			reports = append(reports, string(inst.UID)+" "+c.Reason)
		}
		return nil
	}
	b.enqueue = func(key string) {
		mu.Lock()
		defer mu.Unlock()
		enqueued = append(enqueued, key)
	}
	instance := func(uid types.UID) *v1beta1.ETCDInstance {
		return &v1beta1.ETCDInstance{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db", UID: uid, CreationTimestamp: metav1.NewTime(now.Add(-2 * time.Minute))},
			Spec: v1beta1.ETCDInstanceSpec{Backup: &v1beta1.BackupSpec{Schedule: "* * * * *",
				Destination: v1beta1.BackupDestination{Local: &v1beta1.LocalDestination{}}}},
		}
	}
	step := func(uid types.UID) {
		t.Helper()
		if after := b.step(context.WithValue(ctx, uidKey{}, string(uid)), instance(uid)); after != 0 {
			t.Fatalf("%s: next backup in %s, want one now", uid, after)
		}
		expect(t, dialer.started, string(uid), "backup of "+string(uid)+" started")
	}

	step("uid-1")
	b.forget("ns/db")
	expect(t, dialer.cancelled, "uid-1", "backup of the deleted uid-1 cancelled")

	// The same name again: a fresh schedule starts at once, not held by uid-1's.
	step("uid-2")
	// A third instance of that name seen before uid-2's deletion was: uid-2's backup stops.
	step("uid-3")
	expect(t, dialer.cancelled, "uid-2", "backup of the replaced uid-2 cancelled")
	b.forget("ns/db")
	expect(t, dialer.cancelled, "uid-3", "backup of the deleted uid-3 cancelled")
	b.wait()

	mu.Lock()
	defer mu.Unlock()
	if len(reports) != 0 || len(enqueued) != 0 {
		t.Fatalf("cancelled backups reported conditions %q and enqueued %q, want nothing", reports, enqueued)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.running)+len(b.uids)+len(b.attempted)+len(b.failures)+len(b.succeeded) != 0 {
		t.Fatalf("state kept after the deletions: running %v uids %v attempted %v failures %v succeeded %v",
			b.running, b.uids, b.attempted, b.failures, b.succeeded)
	}
}

// expect waits for want on ch.
func expect(t *testing.T, ch <-chan string, want, what string) {
	t.Helper()
	select {
	case got := <-ch:
		if got != want {
			t.Fatalf("%s: got %s", what, got)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: did not happen", what)
	}
}
