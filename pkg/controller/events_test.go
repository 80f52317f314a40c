package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
)

// TestNewEventRecorderUsesTheServedAPI records a step's event through a server with
// events.k8s.io/v1 and through one with only core/v1, as the standalone server is.
func TestNewEventRecorderUsesTheServedAPI(t *testing.T) {
	inst := &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns", UID: "uid-1"}}
	res := &backend.Result{}
	res.Record(backend.ReasonMemberRemoved, "Removed member %s", "db-2")
	record := func(t *testing.T, client kubernetes.Interface) {
		ctx, cancel := context.WithCancel(context.Background())
		recorder, stop := NewEventRecorder(ctx, client)
		t.Cleanup(func() { stop(); cancel() })
		c := &Controller{opts: Options{Events: recorder}}
		c.recordEvents(inst, res)
	}
	wait := func(t *testing.T, list func() (int, error)) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			n, err := list()
			if err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("no event recorded")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	t.Run("events.k8s.io/v1", func(t *testing.T) {
		client := kubefake.NewClientset()
		client.Resources = []*metav1.APIResourceList{{GroupVersion: eventsv1.SchemeGroupVersion.String(), APIResources: []metav1.APIResource{{Name: "events", Namespaced: true, Kind: "Event"}}}}
		var got []eventsv1.Event
		record(t, client)
		wait(t, func() (int, error) {
			l, err := client.EventsV1().Events("ns").List(context.Background(), metav1.ListOptions{})
			if err != nil {
				return 0, err
			}
			got = l.Items
			return len(got), nil
		})
		e := got[0]
		if e.Type != "Normal" || e.Reason != "MemberRemoved" || e.Action != "RemoveMember" || e.Note != "Removed member db-2" || e.ReportingController != Component {
			t.Fatalf("event %+v", e)
		}
		if r := e.Regarding; r.Kind != "ETCDInstance" || r.APIVersion != v1beta1.SchemeGroupVersion.String() || r.Name != "db" || r.Namespace != "ns" || r.UID != "uid-1" {
			t.Fatalf("regarding %+v", r)
		}
	})
	t.Run("core/v1 only", func(t *testing.T) {
		client := kubefake.NewClientset()
		var got []corev1.Event
		record(t, client)
		wait(t, func() (int, error) {
			l, err := client.CoreV1().Events("ns").List(context.Background(), metav1.ListOptions{})
			if err != nil {
				return 0, err
			}
			got = l.Items
			return len(got), nil
		})
		e := got[0]
		if e.Type != "Normal" || e.Reason != "MemberRemoved" || e.Message != "Removed member db-2" || e.Source.Component != Component {
			t.Fatalf("event %+v", e)
		}
		if r := e.InvolvedObject; r.Kind != "ETCDInstance" || r.Name != "db" || r.Namespace != "ns" || r.UID != "uid-1" {
			t.Fatalf("involved object %+v", r)
		}
	})
}

// TestNoteQuorumLossOnlyOnTheTransition: losing quorum is one QuorumLost Warning Event, not
// one per look while the status says so; none on a healthy cluster; another once lost again.
func TestNoteQuorumLossOnlyOnTheTransition(t *testing.T) {
	recorder := events.NewFakeRecorder(10)
	c := &Controller{opts: Options{Events: recorder}}
	inst := &v1beta1.ETCDInstance{}
	lost := func() *backend.Result {
		return &backend.Result{QuorumLost: "quorum lost: 2 of 3 voting members do not answer (a, b); 2 are needed"}
	}
	want := "Warning QuorumLost " + lost().QuorumLost
	expect := func(what string, n int) {
		t.Helper()
		expectEvents(t, recorder, what, want, n)
	}
	res := lost()
	c.noteQuorumLoss(inst, res)
	expect("losing quorum", 1)
	inst.Status = computeStatus(inst, res, nil, metav1.Now())
	c.noteQuorumLoss(inst, lost())
	healthy := &backend.Result{Converged: true}
	c.noteQuorumLoss(inst, healthy)
	expect("quorum still lost, then healthy", 0)
	inst.Status = computeStatus(inst, healthy, nil, metav1.Now())
	c.noteQuorumLoss(inst, lost())
	expect("losing quorum again", 1)
}

// TestNotePermanentFailureOnlyOnTheTransition: a failure only a spec change fixes (here
// spec.restoreFrom naming a backup that does not exist) is a Warning Event named by its
// reason when the instance turns Failed, and not again while the status says so.
func TestNotePermanentFailureOnlyOnTheTransition(t *testing.T) {
	recorder := events.NewFakeRecorder(10)
	c := &Controller{opts: Options{Events: recorder}}
	inst := &v1beta1.ETCDInstance{}
	failure := backend.Permanent(ReasonBackupNotFound, "spec.restoreFrom.key: instance src has no backup %q", "k.db")
	c.notePermanentFailure(inst, failure)
	select {
	case got := <-recorder.Events:
		if want := `Warning BackupNotFound spec.restoreFrom.key: instance src has no backup "k.db"`; got != want {
			t.Fatalf("event %q, want %q", got, want)
		}
	default:
		t.Fatal("no event when the instance fails")
	}
	inst.Status = computeStatus(inst, nil, failure, metav1.Now())
	c.notePermanentFailure(inst, failure)
	c.notePermanentFailure(inst, errors.New("a transient error"))
	c.notePermanentFailure(inst, nil)
	select {
	case got := <-recorder.Events:
		t.Fatalf("event %q while the status already says so, or for a transient error", got)
	default:
	}
}

// TestCoreEventsKeepEveryStepOfAnInstance records the steps of a few scales of one instance
// through a server with only core/v1 Events, as the standalone server is: client-go's default
// spam filter let through 25 Normal Events per instance and then one every 5 minutes, so
// `kubectl describe` stopped showing the members added and removed after three scales.
// Every step must be counted, and the last one shown (similar Events are combined after
// ten, as upstream controllers' are).
func TestCoreEventsKeepEveryStepOfAnInstance(t *testing.T) {
	inst := &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns", UID: "uid-1"}}
	client := kubefake.NewClientset()
	ctx, cancel := context.WithCancel(context.Background())
	recorder, stop := NewEventRecorder(ctx, client)
	t.Cleanup(func() { stop(); cancel() })
	c := &Controller{opts: Options{Events: recorder}}
	const steps = 40
	for i := range steps / 2 {
		res := &backend.Result{}
		res.Record(backend.ReasonMemberAdded, "Added member db-%d as a learner", i)
		res.Record(backend.ReasonMemberPromoted, "Promoted member db-%d to a voting member", i)
		c.recordEvents(inst, res)
	}

	var counted int32
	var messages []string
	deadline := time.Now().Add(5 * time.Second)
	for counted < steps && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		l, err := client.CoreV1().Events("ns").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		counted, messages = 0, nil
		for _, e := range l.Items {
			counted += e.Count
			messages = append(messages, e.Message)
		}
	}
	if counted != steps {
		t.Fatalf("the Events count %d steps, want %d", counted, steps)
	}
	want := fmt.Sprintf("Promoted member db-%d to a voting member", steps/2-1)
	if !slices.ContainsFunc(messages, func(m string) bool { return strings.HasSuffix(m, want) }) {
		t.Fatalf("no Event tells the last step %q: %q", want, messages)
	}
}

// TestNoteBlockedOnlyOnTheTransition: an instance that becomes blocked (member repair off, a
// member lost) gets one Warning Event with the block's reason and message, not one per look;
// once unblocked and blocked again, another.
func TestNoteBlockedOnlyOnTheTransition(t *testing.T) {
	recorder := events.NewFakeRecorder(10)
	c := &Controller{opts: Options{Events: recorder}}
	inst := &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "db"}, Spec: v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](3)}}
	want := "Warning MemberRepairDisabled " + blockedResult().Blocked
	expect := func(what string, n int) {
		t.Helper()
		expectEvents(t, recorder, what, want, n)
	}
	res := blockedResult()
	c.noteBlocked(inst, res)
	expect("becoming blocked", 1)
	inst.Status = computeStatus(inst, res, nil, metav1.Now())
	for range 3 {
		again := blockedResult()
		c.noteBlocked(inst, again)
		inst.Status = computeStatus(inst, again, nil, metav1.Now())
	}
	healthy := &backend.Result{Members: members(3, 3), Converged: true}
	c.noteBlocked(inst, healthy)
	expect("still blocked, then healthy", 0)
	inst.Status = computeStatus(inst, healthy, nil, metav1.Now())
	c.noteBlocked(inst, blockedResult())
	expect("blocked again", 1)
}

// expectEvents checks that recorder holds exactly n events, each want; what names the moment.
func expectEvents(t *testing.T, recorder *events.FakeRecorder, what, want string, n int) {
	t.Helper()
	for i := range n {
		select {
		case got := <-recorder.Events:
			if got != want {
				t.Fatalf("%s: event %q, want %q", what, got, want)
			}
		default:
			t.Fatalf("%s: %d events, want %d", what, i, n)
		}
	}
	select {
	case got := <-recorder.Events:
		t.Fatalf("%s: another event %q", what, got)
	default:
	}
}

// TestNoteRefusedOnlyOnTheTransition: a spec.version the backend cannot run, refused while
// the members go on, is one Warning Event, not one per look: neither while a step under way
// has Progressing say what it does, nor while a failed step has Degraded say why; once the
// version is accepted and refused again, another.
func TestNoteRefusedOnlyOnTheTransition(t *testing.T) {
	recorder := events.NewFakeRecorder(10)
	c := &Controller{opts: Options{Events: recorder}}
	inst := &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "db"}, Spec: v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](3)}}
	inst.Status = computeStatus(inst, &backend.Result{Members: members(3, 3), Converged: true}, nil, metav1.Now())
	refused := func(res *backend.Result) *backend.Result {
		res.Refuse(&backend.PermanentError{Reason: "UnsupportedVersion", Message: `etcd version "3.8" is not available: the kubernetes backend runs 3.6, 3.7`}, "the members keep running image etcd:v3.7.3")
		return res
	}
	want := "Warning UnsupportedVersion " + refused(&backend.Result{}).Refused
	expect := func(what string, n int) {
		t.Helper()
		expectEvents(t, recorder, what, want, n)
	}
	look := func(res *backend.Result, syncErr error) {
		c.noteRefused(inst, res)
		inst.Status = computeStatus(inst, res, syncErr, metav1.Now())
	}
	look(refused(&backend.Result{Members: members(3, 3), Converged: true}), nil)
	expect("refusing the version", 1)
	look(refused(&backend.Result{Members: members(3, 3), Converged: true}), nil)
	look(refused(&backend.Result{Members: members(4, 3), Step: "added member db-3", StepReason: backend.StepAddingMember}), nil)
	look(refused(&backend.Result{Members: members(4, 4), Converged: true}), nil)
	look(refused(&backend.Result{Members: members(4, 4)}), errors.New("updating the StatefulSet: conflict"))
	look(refused(&backend.Result{Members: members(4, 3), Unhealthy: "unhealthy members: m-3: connection refused"}), nil)
	look(refused(&backend.Result{Members: members(4, 4), Converged: true}), nil)
	expect("still refused: a scale, a failed step, a member down", 0)
	look(&backend.Result{Members: members(4, 4), Converged: true}, nil)
	look(refused(&backend.Result{Members: members(4, 4), Converged: true}), nil)
	expect("refused again", 1)
}
