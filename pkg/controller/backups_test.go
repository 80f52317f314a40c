package controller

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	kubefake "k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/component-base/metrics/legacyregistry"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/backup"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	"github.com/etcdaas/etcdaas/pkg/controller/metrics"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
	"github.com/etcdaas/etcdaas/pkg/etcdtest"
	"github.com/etcdaas/etcdaas/test/s3server"
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

// blockedSchedule is a backups whose every backup blocks until it is cancelled (the dialer
// holds it), recording the conditions it reports and the keys it enqueues.
type blockedSchedule struct {
	*backups
	dialer   *blockingDialer
	now      time.Time
	mu       sync.Mutex
	reports  []string // "UID reason" of each condition reported
	enqueued []string
}

func newBlockedSchedule(t *testing.T, now time.Time) *blockedSchedule {
	dialer := &blockingDialer{started: make(chan string, 4), cancelled: make(chan string, 4)}
	s := &blockedSchedule{dialer: dialer, now: now,
		backups: newBackups(BackupOptions{Dialer: dialer, Resolver: backup.Resolver{LocalRoot: t.TempDir()}})}
	s.backups.now = func() time.Time { return now }
	s.writeStatus = func(_ context.Context, inst *v1beta1.ETCDInstance, compute func(*v1beta1.ETCDInstance) v1beta1.ETCDInstanceStatus) error {
		st := compute(inst)
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range st.Conditions {
			s.reports = append(s.reports, string(inst.UID)+" "+c.Reason)
		}
		return nil
	}
	s.enqueue = func(key string) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.enqueued = append(s.enqueued, key)
	}
	return s
}

// instance is ns/db under uid, backed up every minute to the local destination.
func (s *blockedSchedule) instance(uid types.UID) *v1beta1.ETCDInstance {
	return &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db", UID: uid, CreationTimestamp: metav1.NewTime(s.now.Add(-2 * time.Minute))},
		Spec: v1beta1.ETCDInstanceSpec{Backup: &v1beta1.BackupSpec{Schedule: "* * * * *",
			Destination: v1beta1.BackupDestination{Local: &v1beta1.LocalDestination{}}}},
	}
}

// start steps inst, whose backup is due, and waits for the backup to start.
func (s *blockedSchedule) start(ctx context.Context, t *testing.T, inst *v1beta1.ETCDInstance) {
	t.Helper()
	uid := string(inst.UID)
	if after := s.step(context.WithValue(ctx, uidKey{}, uid), inst); after != 0 {
		t.Fatalf("%s: next backup in %s, want one now", uid, after)
	}
	expect(t, s.dialer.started, uid, "backup of "+uid+" started")
}

// expectNothingLeft fails unless nothing was reported or enqueued and no state is kept.
func (s *blockedSchedule) expectNothingLeft(t *testing.T, what string) {
	t.Helper()
	s.wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reports) != 0 || len(s.enqueued) != 0 {
		t.Fatalf("%s: conditions %q reported and %q enqueued, want nothing", what, s.reports, s.enqueued)
	}
	s.backups.mu.Lock()
	defer s.backups.mu.Unlock()
	if len(s.running)+len(s.uids)+len(s.attempted)+len(s.failures)+len(s.succeeded) != 0 {
		t.Fatalf("%s: state kept: running %v uids %v attempted %v failures %v succeeded %v",
			what, s.running, s.uids, s.attempted, s.failures, s.succeeded)
	}
}

// TestForgetStopsTheScheduleOfADeletedInstance: deleting an instance cancels its running
// backup, which then reports nothing; an instance created again under the same name gets a
// schedule of its own, and one seen under a new UID before the deletion was seen stops the
// old one's backup too.
func TestForgetStopsTheScheduleOfADeletedInstance(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := newBlockedSchedule(t, time.Date(2026, 11, 29, 3, 0, 30, 0, time.UTC))

	s.start(ctx, t, s.instance("uid-1"))
	s.forget("ns/db")
	expect(t, s.dialer.cancelled, "uid-1", "backup of the deleted uid-1 cancelled")

	// The same name again: a fresh schedule starts at once, not held by uid-1's.
	s.start(ctx, t, s.instance("uid-2"))
	// A third instance of that name seen before uid-2's deletion was: uid-2's backup stops.
	s.start(ctx, t, s.instance("uid-3"))
	expect(t, s.dialer.cancelled, "uid-2", "backup of the replaced uid-2 cancelled")
	s.forget("ns/db")
	expect(t, s.dialer.cancelled, "uid-3", "backup of the deleted uid-3 cancelled")
	s.expectNothingLeft(t, "after the deletions")
}

// Removing spec.backup stops the schedule: the backup running then is cancelled and reports
// nothing, what the schedule remembered is dropped, and a backup that ends later does not
// set the BackupSucceeded condition on an instance that no longer has spec.backup.
func TestRemovingTheScheduleStopsItsBackup(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := newBlockedSchedule(t, time.Date(2026, 11, 30, 4, 0, 30, 0, time.UTC))
	inst := s.instance("uid-1")
	s.start(ctx, t, inst)

	off := inst.DeepCopy()
	off.Spec.Backup = nil
	if after := s.step(context.WithValue(ctx, uidKey{}, "uid-1"), off); after != 0 {
		t.Fatalf("spec.backup removed: next backup in %s, want none", after)
	}
	expect(t, s.dialer.cancelled, "uid-1", "running backup cancelled once spec.backup was removed")
	// A backup ending after the removal reports its status.backup, never the condition.
	s.report(ctx, off, func(*v1beta1.BackupStatus) {}, metav1.ConditionTrue, ReasonBackupCompleted, "late")
	s.expectNothingLeft(t, "spec.backup removed")
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

// stallingLists forwards requests to an S3 store but holds every listing of the instance's
// backups (not of its incomplete uploads) until the request is cancelled: a store that stops
// answering in the middle of the retention step.
func stallingLists(t *testing.T, store *s3server.Server) string {
	t.Helper()
	target, err := url.Parse(store.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if r.Method == http.MethodGet && q.Has("list-type") && !strings.Contains(q.Get("prefix"), "incomplete") {
			<-r.Context().Done()
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// A store that stalls while old backups are listed for retention must not hold the
// instance's schedule for good: the retention step is bounded like the backup itself, the
// backup is reported with the failed retention, and the next one can start.
func TestRetentionIsBoundedByTheBackupTimeout(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store := s3server.Start(t)
	var calls int
	access := &etcdcluster.Access{Endpoints: []string{etcdtest.Start(t, nil)}}
	creds := backup.EnvCredentials{Lookup: func(name string) (string, bool) {
		switch name {
		case backup.EnvAccessKeyID:
			return store.AccessKeyID, true
		case backup.EnvSecretAccessKey:
			return store.SecretAccessKey, true
		}
		return "", false
	}}
	b := newBackups(BackupOptions{Dialer: accessDialer{access, &calls}, Resolver: backup.Resolver{Credentials: creds}, Timeout: 5 * time.Second})
	var mu sync.Mutex
	var messages []string
	b.writeStatus = func(_ context.Context, inst *v1beta1.ETCDInstance, compute func(*v1beta1.ETCDInstance) v1beta1.ETCDInstanceStatus) error {
		st := compute(inst)
		mu.Lock()
		defer mu.Unlock()
		for _, c := range st.Conditions {
			messages = append(messages, c.Reason+": "+c.Message)
		}
		return nil
	}
	enqueued := make(chan string, 1)
	b.enqueue = func(key string) { enqueued <- key }
	inst := &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db", UID: "uid-1", CreationTimestamp: metav1.NewTime(time.Now().Add(-2 * time.Minute))},
		Spec: v1beta1.ETCDInstanceSpec{Backup: &v1beta1.BackupSpec{Schedule: "* * * * *", Destination: v1beta1.BackupDestination{
			S3: &v1beta1.S3Destination{Endpoint: stallingLists(t, store), Bucket: store.Bucket}}}},
	}
	if after := b.step(ctx, inst); after != 0 {
		t.Fatalf("next backup in %s, want one now", after)
	}
	select {
	case <-enqueued:
	case <-time.After(30 * time.Second):
		t.Fatal("the backup never ended: its retention step waits for the store for good")
	}
	b.wait()
	mu.Lock()
	defer mu.Unlock()
	if len(messages) != 1 || !strings.HasPrefix(messages[0], ReasonBackupCompleted+": ") || !strings.Contains(messages[0], "deleting backups beyond the newest") {
		t.Fatalf("reported %q, want the completed backup with its failed retention", messages)
	}
}

// failingDialer reaches no member.
type failingDialer struct{}

func (failingDialer) Access(context.Context, string, string) (*etcdcluster.Access, error) {
	return nil, errors.New("no member answers")
}

// TestFailedBackupIsAWarningEvent: scheduled backups that start failing are a BackupFailed
// Warning Event on the instance (what kubectl describe and kubectl events show), not only the
// BackupSucceeded condition; further failures for the same reason are not (they would use up
// the Warning Events client-go lets through per object), one for another reason is.
func TestFailedBackupIsAWarningEvent(t *testing.T) {
	b := newBackups(BackupOptions{Dialer: failingDialer{}, Resolver: backup.Resolver{LocalRoot: t.TempDir(),
		Credentials: backup.EnvCredentials{Lookup: func(string) (string, bool) { return "", false }}}})
	now := time.Date(2026, 11, 29, 3, 0, 30, 0, time.UTC)
	b.now = func() time.Time { return now }
	b.writeStatus = func(_ context.Context, inst *v1beta1.ETCDInstance, compute func(*v1beta1.ETCDInstance) v1beta1.ETCDInstanceStatus) error {
		compute(inst)
		return nil
	}
	b.enqueue = func(string) {}
	var mu sync.Mutex
	var recorded []string
	b.record = func(inst *v1beta1.ETCDInstance, reason backend.EventReason, note string) {
		mu.Lock()
		defer mu.Unlock()
		recorded = append(recorded, inst.Name+" "+reason.Type()+" "+string(reason)+": "+note)
	}
	inst := &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db", UID: "uid-1", CreationTimestamp: metav1.NewTime(now.Add(-2 * time.Minute))},
		Spec: v1beta1.ETCDInstanceSpec{Backup: &v1beta1.BackupSpec{Schedule: "* * * * *",
			Destination: v1beta1.BackupDestination{Local: &v1beta1.LocalDestination{}}}},
	}
	attempt := func(condReason string) []string {
		t.Helper()
		if condReason != "" { // what the previous attempt reported, as the informer shows it
			inst.Status.Conditions = []metav1.Condition{{Type: "BackupSucceeded", Status: metav1.ConditionFalse, Reason: condReason}}
		}
		if after := b.step(context.Background(), inst); after != 0 {
			t.Fatalf("next backup in %s, want one now", after)
		}
		b.wait()
		now = now.Add(15 * time.Minute) // past any backoff
		mu.Lock()
		defer mu.Unlock()
		got := recorded
		recorded = nil
		return got
	}
	if got := attempt(""); len(got) != 1 || !strings.HasPrefix(got[0], "db Warning BackupFailed: Scheduled backup started ") ||
		!strings.Contains(got[0], "attempt 1") || !strings.Contains(got[0], "no member answers") {
		t.Fatalf("events %q, want one BackupFailed Warning naming the attempt and the cause", got)
	}
	if got := attempt(ReasonBackupFailed); len(got) != 0 {
		t.Fatalf("events %q for a second failure of the same kind, want none", got)
	}
	inst.Spec.Backup.Destination = v1beta1.BackupDestination{S3: &v1beta1.S3Destination{Endpoint: "http://127.0.0.1:1", Bucket: "b"}}
	if got := attempt(ReasonBackupFailed); len(got) != 1 || !strings.Contains(got[0], "attempt 3") || !strings.HasSuffix(got[0], "("+ReasonCredentialsUnavailable+")") {
		t.Fatalf("events %q, want one BackupFailed Warning for the new reason", got)
	}
}

// TestScheduledBackupTellsMissingCredentialsFromAnAPIHiccup: a scheduled backup whose
// credentials Secret the Kubernetes API cannot give for now reports DestinationUnavailable
// (and is retried); one whose Secret does not exist reports CredentialsUnavailable.
func TestScheduledBackupTellsMissingCredentialsFromAnAPIHiccup(t *testing.T) {
	inst := &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db", UID: "uid-1"},
		Spec: v1beta1.ETCDInstanceSpec{Backup: &v1beta1.BackupSpec{Schedule: "* * * * *", Destination: v1beta1.BackupDestination{S3: &v1beta1.S3Destination{
			Endpoint: "https://127.0.0.1:1", Bucket: "b", CredentialsSecretRef: &v1beta1.SecretReference{Name: "creds"}}}}},
	}
	for _, tc := range []struct {
		secretErr error
		want      string
	}{
		{apierrors.NewServiceUnavailable("etcd is down"), ReasonDestinationUnavailable},
		{apierrors.NewTimeoutError("request did not complete within requested timeout", 0), ReasonDestinationUnavailable},
		{apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, "creds"), ReasonCredentialsUnavailable},
	} {
		secrets := kubefake.NewClientset()
		secrets.PrependReactor("get", "secrets", func(clienttesting.Action) (bool, runtime.Object, error) {
			return true, nil, tc.secretErr
		})
		b := newBackups(BackupOptions{Dialer: failingDialer{}, Resolver: backup.Resolver{Credentials: backup.SecretCredentials{Client: secrets}}})
		if _, _, reason, err := b.take(context.Background(), inst); reason != tc.want || err == nil {
			t.Errorf("Secret read failing with %q: reason %q (%v), want %s", tc.secretErr, reason, err, tc.want)
		}
	}
}

// TestScheduleThatNeverFiresTakesNoBackup: an instance stored with a schedule no date matches
// (February 30, which validation accepted before it refused it) reports InvalidSchedule and
// takes no backup, instead of one backup after another as fast as the destination takes them.
func TestScheduleThatNeverFiresTakesNoBackup(t *testing.T) {
	dialer := &blockingDialer{started: make(chan string, 1), cancelled: make(chan string, 1)}
	b := newBackups(BackupOptions{Dialer: dialer, Resolver: backup.Resolver{LocalRoot: t.TempDir()}})
	now := time.Date(2026, 11, 29, 3, 0, 30, 0, time.UTC)
	b.now = func() time.Time { return now }
	var reported []string
	b.writeStatus = func(_ context.Context, inst *v1beta1.ETCDInstance, compute func(*v1beta1.ETCDInstance) v1beta1.ETCDInstanceStatus) error {
		for _, c := range compute(inst).Conditions {
			reported = append(reported, c.Reason+": "+c.Message)
		}
		return nil
	}
	b.enqueue = func(string) {}
	inst := &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db", UID: "uid-1", CreationTimestamp: metav1.NewTime(now.Add(-2 * time.Minute))},
		Spec: v1beta1.ETCDInstanceSpec{Backup: &v1beta1.BackupSpec{Schedule: "0 0 30 2 *",
			Destination: v1beta1.BackupDestination{Local: &v1beta1.LocalDestination{}}}},
	}
	if after := b.step(context.Background(), inst); after != 0 {
		t.Fatalf("next backup in %s, want none scheduled", after)
	}
	select {
	case uid := <-dialer.started:
		t.Fatalf("a backup of %s started for a schedule that never fires", uid)
	case <-time.After(200 * time.Millisecond):
	}
	if len(reported) != 1 || !strings.HasPrefix(reported[0], ReasonInvalidSchedule+": ") || !strings.Contains(reported[0], "never fires") {
		t.Fatalf("reported %q, want InvalidSchedule saying the schedule never fires", reported)
	}
}

// gaugeValue returns the value of the series of the named gauge labelled namespace ns and
// name, and whether it exists, from the registry /metrics serves.
func gaugeValue(t *testing.T, metric, ns, name string) (float64, bool) {
	t.Helper()
	families, err := legacyregistry.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != metric {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["namespace"] == ns && labels["name"] == name {
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

// TestNextScheduledBackupIsExposed: etcdaas_backup_next_scheduled_timestamp_seconds is the
// slot of spec.backup.schedule after the last successful backup, so that an alert tells an
// overdue backup: it stays in the past while backups fail, moves on with a success (the one
// in the status, as a controller that just started sees it) and goes when spec.backup does.
func TestNextScheduledBackupIsExposed(t *testing.T) {
	const next = "etcdaas_backup_next_scheduled_timestamp_seconds"
	metrics.Register()
	defer metrics.ForgetInstance("ns", "sched")
	b := newBackups(BackupOptions{Dialer: failingDialer{}, Resolver: backup.Resolver{LocalRoot: t.TempDir()}})
	now := time.Date(2026, 11, 29, 3, 0, 30, 0, time.UTC)
	b.now = func() time.Time { return now }
	b.writeStatus = func(_ context.Context, inst *v1beta1.ETCDInstance, compute func(*v1beta1.ETCDInstance) v1beta1.ETCDInstanceStatus) error {
		compute(inst)
		return nil
	}
	b.enqueue = func(string) {}
	inst := &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "sched", UID: "uid-1", CreationTimestamp: metav1.NewTime(now.Add(-30 * time.Minute))},
		Spec: v1beta1.ETCDInstanceSpec{Backup: &v1beta1.BackupSpec{Schedule: "0 * * * *",
			Destination: v1beta1.BackupDestination{Local: &v1beta1.LocalDestination{}}}},
	}
	due := func(want time.Time, what string) {
		t.Helper()
		b.step(context.Background(), inst)
		b.wait()
		if got, ok := gaugeValue(t, next, "ns", "sched"); !ok || got != float64(want.Unix()) {
			t.Fatalf("%s: %s %v (exported %v), want %v", what, next, time.Unix(int64(got), 0).UTC(), ok, want)
		}
	}
	due(time.Date(2026, 11, 29, 3, 0, 0, 0, time.UTC), "the first slot after the creation, its backup failing")
	now = now.Add(90 * time.Minute)
	due(time.Date(2026, 11, 29, 3, 0, 0, 0, time.UTC), "every backup failing since")
	inst.Status.Backup = &v1beta1.BackupStatus{LastSuccessfulTime: &metav1.Time{Time: time.Date(2026, 11, 29, 4, 20, 0, 0, time.UTC)}}
	due(time.Date(2026, 11, 29, 5, 0, 0, 0, time.UTC), "after a success at 04:20")
	inst.Spec.Backup = nil
	b.step(context.Background(), inst)
	if _, ok := gaugeValue(t, next, "ns", "sched"); ok {
		t.Fatalf("%s still exported once spec.backup is removed", next)
	}
}
