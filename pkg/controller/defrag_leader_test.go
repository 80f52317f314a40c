package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	"github.com/etcdaas/etcdaas/pkg/controller/backend/local"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
)

// convergedSync calls Sync until the instance converges and returns that result.
func convergedSync(t *testing.T, b backend.Backend, inst *v1beta1.ETCDInstance) *backend.Result {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		res, err := b.Sync(context.Background(), inst)
		if err == nil && res.Converged {
			return res
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not converge: %v, %+v", inst.Name, err, res)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// eventNotes are the notes of res's Events with reason.
func eventNotes(res *backend.Result, reason backend.EventReason) []string {
	var notes []string
	for _, ev := range res.Events {
		if ev.Reason == reason {
			notes = append(notes, ev.Note)
		}
	}
	return notes
}

// writeElsewhere writes a key through the members other than the one at endpoint, bounded
// by 3s, and returns how long it took.
func writeElsewhere(access *etcdcluster.Access, endpoint string) (time.Duration, error) {
	others := slices.DeleteFunc(slices.Clone(access.Endpoints), func(e string) bool { return e == endpoint })
	cli, err := access.New(others...)
	if err != nil {
		return 0, err
	}
	defer func() { _ = cli.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	started := time.Now()
	_, err = cli.Put(ctx, "/during-defrag", endpoint)
	return time.Since(started), err
}

// filledInstance is a converged 3-member instance of a new local backend with a defragmentation
// requested (t1) and some data, so that a defragmentation takes a while.
func filledInstance(t *testing.T) (*local.Backend, *v1beta1.ETCDInstance) {
	t.Helper()
	b, err := local.New(local.Options{Dir: t.TempDir(), StepTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	ctx := context.Background()
	inst := &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db", UID: "db-uid",
			Annotations: map[string]string{etcdaas.DefragRequestedAnnotation: "t1"}},
		Spec: v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](3)},
	}
	convergedSync(t, b, inst)
	access, err := b.Access(ctx, "ns", "db")
	if err != nil {
		t.Fatal(err)
	}
	cli, err := access.New()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cli.Close() }()
	value := strings.Repeat("x", 64<<10)
	for i := range 48 {
		if _, err := cli.Put(ctx, fmt.Sprintf("/fill/%02d", i), value); err != nil {
			t.Fatal(err)
		}
	}
	return b, inst
}

// defragRecorder wraps a defragmenter's etcd calls: it records them in order ("move ID",
// "defragment ID"), the members that led when their defragmentation started, and checks that
// a write through the other members succeeds during each; moveErr, when set, fails the moves.
type defragRecorder struct {
	t                   *testing.T
	calls               []string
	ledWhenDefragmented []string
	moveErr             error
}

func (r *defragRecorder) wrap(d *defragmenter) {
	d.defragment = r.defragment
	d.moveLeaderAway = func(ctx context.Context, access *etcdcluster.Access, from uint64, members []etcdcluster.Member, statuses []etcdcluster.EndpointStatus) error {
		r.calls = append(r.calls, "move "+etcdcluster.FormatID(from))
		if r.moveErr != nil {
			return r.moveErr
		}
		return etcdcluster.MoveLeaderAway(ctx, access, from, members, statuses)
	}
}

func (r *defragRecorder) defragment(ctx context.Context, access *etcdcluster.Access, endpoint string, timeout time.Duration) error {
	st := etcdcluster.Status(ctx, access, endpoint)
	id := etcdcluster.FormatID(st.MemberID)
	r.calls = append(r.calls, "defragment "+id)
	if st.MemberID == 0 || st.Leader == st.MemberID {
		r.ledWhenDefragmented = append(r.ledWhenDefragmented, id)
	}
	written := make(chan error, 1)
	go func() {
		took, err := writeElsewhere(access, endpoint)
		r.t.Logf("a write while member %s is defragmented took %s", id, took)
		written <- err
	}()
	err := etcdcluster.Defragment(ctx, access, endpoint, timeout)
	if werr := <-written; werr != nil {
		r.t.Errorf("a write while member %s was defragmented: %v", id, werr)
	}
	return err
}

// leaderOf is the ID of the member res reports leading.
func leaderOf(t *testing.T, res *backend.Result) string {
	t.Helper()
	i := slices.IndexFunc(res.Members, func(m v1beta1.MemberStatus) bool { return m.Leader })
	if i < 0 {
		t.Fatalf("no leader in %+v", res.Members)
	}
	return res.Members[i].ID
}

// TestDefragmentingTheLeaderMovesLeadershipFirst runs an on-demand round on a real 3-member
// instance of the local backend: the followers are defragmented first; before the leader is,
// leadership goes to another member, so that no member is defragmented while it leads and
// writes go on during the round. A failed move postpones the leader's defragmentation (a
// DefragmentFailed Event says why) instead of stalling the cluster's writes; the next look
// tries again.
func TestDefragmentingTheLeaderMovesLeadershipFirst(t *testing.T) {
	b, inst := filledInstance(t)
	ctx := context.Background()
	d := newDefragmenter(DefragOptions{}, b)
	r := &defragRecorder{t: t, moveErr: errors.New("injected: the transferee did not answer")}
	r.wrap(d)

	// The followers, one per look; leadership stays.
	res := convergedSync(t, b, inst)
	leader := leaderOf(t, res)
	for range 2 {
		if ok, err := d.step(ctx, inst, res, nil); !ok || err != nil {
			t.Fatalf("defragmenting a follower: %v %v; events %+v", ok, err, res.Events)
		}
		res = convergedSync(t, b, inst)
	}
	if len(r.ledWhenDefragmented) != 0 || len(r.calls) != 2 || slices.Contains(r.calls, "defragment "+leader) {
		t.Fatalf("the followers' defragmentations: calls %v, led by the member defragmented: %v", r.calls, r.ledWhenDefragmented)
	}

	// The leader: the move fails, twice; its defragmentation waits.
	for look := range 2 {
		res = convergedSync(t, b, inst)
		ok, err := d.step(ctx, inst, res, nil)
		if ok || err == nil || !strings.Contains(err.Error(), "injected") {
			t.Fatalf("look %d with a failing move: defragmented %v, error %v", look, ok, err)
		}
		failed := eventNotes(res, backend.ReasonDefragmentFailed)
		if len(failed) != 1 || !strings.Contains(failed[0], "(leader) yet: moving leadership to another member failed: injected") {
			t.Fatalf("look %d with a failing move: DefragmentFailed events %q", look, failed)
		}
		if want := "move " + leader; r.calls[len(r.calls)-1] != want {
			t.Fatalf("look %d with a failing move: calls %v, want %q last", look, r.calls, want)
		}
	}
	if slices.Contains(r.calls, "defragment "+leader) || d.covered(inst.UID, "t1", res.Members) {
		t.Fatalf("the leader was defragmented although leadership could not move: %v", r.calls)
	}

	// The move works: leadership goes first, then the former leader is defragmented.
	r.moveErr = nil
	res = convergedSync(t, b, inst)
	if ok, err := d.step(ctx, inst, res, nil); !ok || err != nil {
		t.Fatalf("defragmenting the leader: %v %v; events %+v", ok, err, res.Events)
	}
	if got, want := r.calls[len(r.calls)-2:], []string{"move " + leader, "defragment " + leader}; !slices.Equal(got, want) {
		t.Fatalf("calls %v, want %v last", r.calls, want)
	}
	if len(r.ledWhenDefragmented) != 0 {
		t.Fatalf("members defragmented while they led: %v (calls %v)", r.ledWhenDefragmented, r.calls)
	}
	checkLeadershipMoved(t, d, convergedSync(t, b, inst), res, inst, leader)
}

// checkLeadershipMoved checks, after the round's last step res, that another member than
// leader leads now, that the leader's Defragmented Event names it, and that the round covered
// every member.
func checkLeadershipMoved(t *testing.T, d *defragmenter, after, res *backend.Result, inst *v1beta1.ETCDInstance, leader string) {
	t.Helper()
	now := leaderOf(t, after)
	nowName := after.Members[slices.IndexFunc(after.Members, func(m v1beta1.MemberStatus) bool { return m.ID == now })].Name
	notes := eventNotes(res, backend.ReasonDefragmented)
	if now == leader || len(notes) != 1 || !strings.Contains(notes[0], " (leader) in ") ||
		!strings.HasSuffix(notes[0], "; leadership moved to member "+nowName+" first, which leads now") {
		t.Fatalf("leader before %s, now %s (%s); Defragmented events %q", leader, now, nowName, notes)
	}
	t.Logf("event: %s", notes[0])
	if !d.covered(inst.UID, "t1", after.Members) {
		t.Fatal("the round did not cover every member")
	}
}
