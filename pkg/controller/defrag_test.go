package controller

import (
	"context"
	"errors"
	"slices"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
	"github.com/etcdaas/etcdaas/pkg/etcdtest"
)

func TestDefragThresholdsFromFlagsAndSpec(t *testing.T) {
	defaults := DefragOptions{}.withDefaults()
	inst := &v1beta1.ETCDInstance{}
	if got := defaults.thresholds(inst); got != (defragThresholds{freePercent: 50, freeBytes: 64 << 20}) {
		t.Fatalf("default thresholds %+v", got)
	}
	// A flag of 0 bytes with a percent set is kept, not replaced by the default.
	if got := (DefragOptions{FreePercent: 20}).withDefaults().thresholds(inst); got != (defragThresholds{freePercent: 20}) {
		t.Fatalf("thresholds from flags %+v", got)
	}
	inst.Spec.Defragmentation = &v1beta1.DefragmentationSpec{FreePercent: ptr.To[int32](10)}
	if got := defaults.thresholds(inst); got != (defragThresholds{freePercent: 10, freeBytes: 64 << 20}) {
		t.Fatalf("thresholds with freePercent overridden %+v", got)
	}
	inst.Spec.Defragmentation.FreeBytes = ptr.To(resource.MustParse("1Mi"))
	if got := defaults.thresholds(inst); got != (defragThresholds{freePercent: 10, freeBytes: 1 << 20}) {
		t.Fatalf("thresholds with both overridden %+v", got)
	}
}

func TestDefragDueNeedsBothThresholds(t *testing.T) {
	th := defragThresholds{freePercent: 50, freeBytes: 64 << 20}
	for _, tc := range []struct {
		name          string
		dbSize, inUse int64
		want          bool
	}{
		{"both passed", 200 << 20, 100 << 20, true},
		{"fraction only", 100 << 20, 40 << 20, false}, // 60% free but 60Mi
		{"bytes only", 1 << 30, 900 << 20, false},     // 124Mi free but 12%
		{"nothing free", 1 << 30, 1 << 30, false},
		{"not reported", 0, 0, false},
	} {
		if got := th.due(tc.dbSize, tc.inUse); got != tc.want {
			t.Errorf("%s: due(%d, %d) = %v, want %v", tc.name, tc.dbSize, tc.inUse, got, tc.want)
		}
	}
	if (defragThresholds{freePercent: 1}).due(100, 100) {
		t.Error("a member with nothing free is due with zero thresholds")
	}
}

func TestDefragNextPicksFollowersBeforeTheLeader(t *testing.T) {
	members := []v1beta1.MemberStatus{{Name: "db-0", ID: "a"}, {Name: "db-1", ID: "b"}, {Name: "db-2", ID: "c"}}
	for _, tc := range []struct {
		done   []string
		leader string
		want   int
	}{
		{nil, "a", 1},
		{[]string{"db-1"}, "a", 2},
		{[]string{"db-1", "db-2"}, "a", 0},
		{[]string{"db-0", "db-1", "db-2"}, "a", -1},
		{nil, "c", 0},
		{[]string{"db-0", "db-1"}, "c", 2},
	} {
		if got := next(members, tc.done, tc.leader); got != tc.want {
			t.Errorf("done %v, leader %s: picked %d, want %d", tc.done, tc.leader, got, tc.want)
		}
	}
}

func TestMayDefragmentOnlyOnAStableCluster(t *testing.T) {
	ready := func() *backend.Result {
		return &backend.Result{Converged: true, Members: []v1beta1.MemberStatus{{Name: "db-0", ID: "a", Ready: true}, {Name: "db-1", ID: "b", Ready: true}}}
	}
	if !mayDefragment(ready(), nil) {
		t.Fatal("a converged cluster may not be defragmented")
	}
	for name, change := range map[string]func(*backend.Result) error{
		"sync failed":  func(*backend.Result) error { return errors.New("boom") },
		"step":         func(r *backend.Result) error { r.Step, r.Converged = "adding member db-2", false; return nil },
		"quorum lost":  func(r *backend.Result) error { r.QuorumLost, r.Converged = "quorum lost", false; return nil },
		"learner":      func(r *backend.Result) error { r.Members[1].Learner = true; return nil },
		"no member id": func(r *backend.Result) error { r.Members[1].ID = ""; return nil },
		"unhealthy": func(r *backend.Result) error {
			r.Converged, r.Unhealthy, r.Members[1].Ready = false, "db-1: down", false
			return nil
		},
		"other alarm": func(r *backend.Result) error {
			r.Converged, r.Members[1].Alarms = false, []string{"CORRUPT"}
			return nil
		},
		"empty cluster": func(r *backend.Result) error { r.Members = nil; return nil },
	} {
		res := ready()
		if mayDefragment(res, change(res)) {
			t.Errorf("%s: a defragmentation may run", name)
		}
	}
	// Out of space: members are unready, and defragmenting is what brings them back.
	res := ready()
	res.Converged, res.Unhealthy = false, "db-0: alarm NOSPACE raised"
	res.Members[0].Ready, res.Members[0].Alarms = false, []string{"NOSPACE"}
	if !mayDefragment(res, nil) {
		t.Fatal("a cluster out of space may not be defragmented")
	}
	if mayDefragment(nil, nil) {
		t.Fatal("no result, yet a defragmentation may run")
	}
}

func TestDefragRoundsCoverEveryMember(t *testing.T) {
	d := newDefragmenter(DefragOptions{}, nil)
	th := defragThresholds{freePercent: 50, freeBytes: 1 << 20}
	full := []v1beta1.MemberStatus{{Name: "db-0", ID: "a", DBSize: 10 << 20, DBSizeInUse: 10 << 20}, {Name: "db-1", ID: "b", DBSize: 10 << 20, DBSizeInUse: 10 << 20}}
	inst := &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{UID: "u"}}
	if _, _, ok := d.round(inst, full, th, false); ok {
		t.Fatal("a round started with nothing due and nothing requested")
	}
	// A compaction while out of space starts one with nothing reported free.
	if request, done, ok := d.round(inst, full, th, true); !ok || request != "" || len(done) != 0 {
		t.Fatalf("round after a compaction: %q %v %v", request, done, ok)
	}
	d.markDone("u", "", "db-0", full)
	d.markDone("u", "", "db-1", full)
	// One member due starts an automatic round over every member; it ends once all are done.
	due := slices.Clone(full)
	due[0].DBSizeInUse = 1 << 20
	if request, done, ok := d.round(inst, due, th, false); !ok || request != "" || len(done) != 0 {
		t.Fatalf("automatic round: %q %v %v", request, done, ok)
	}
	d.markDone("u", "", "db-1", due)
	if _, done, ok := d.round(inst, full, th, false); !ok || !slices.Equal(done, []string{"db-1"}) {
		t.Fatalf("the round goes on with nothing due any more: %v %v", done, ok)
	}
	d.markDone("u", "", "db-0", full)
	if _, _, ok := d.round(inst, full, th, false); ok {
		t.Fatal("the round goes on after covering every member")
	}

	// A request starts a round of its own, remembered per value; a newer request starts over.
	inst.Annotations = map[string]string{etcdaas.DefragRequestedAnnotation: "t1"}
	if request, done, ok := d.round(inst, full, th, false); !ok || request != "t1" || len(done) != 0 {
		t.Fatalf("requested round: %q %v %v", request, done, ok)
	}
	d.markDone("u", "t1", "db-1", full)
	d.markDone("u", "t1", "db-1", full)
	if _, done, _ := d.round(inst, full, th, false); !slices.Equal(done, []string{"db-1"}) || d.covered("u", "t1", full) {
		t.Fatalf("done %v", done)
	}
	d.markDone("u", "t1", "db-0", full)
	if !d.covered("u", "t1", full) || d.covered("u", "t2", full) {
		t.Fatal("covered")
	}
	inst.Annotations[etcdaas.DefragRequestedAnnotation] = "t2"
	if request, done, _ := d.round(inst, full, th, false); request != "t2" || len(done) != 0 {
		t.Fatalf("a newer request starts with %q %v", request, done)
	}
	// Once the request is consumed its round is over.
	delete(inst.Annotations, etcdaas.DefragRequestedAnnotation)
	if _, _, ok := d.round(inst, full, th, false); ok || len(d.rounds) != 0 {
		t.Fatalf("without the annotation: ok %v, remembered %v", ok, d.rounds)
	}
}

// accessDialer reaches every instance through one Access, and counts the calls.
type accessDialer struct {
	access *etcdcluster.Access
	calls  *int
}

func (d accessDialer) Access(context.Context, string, string) (*etcdcluster.Access, error) {
	*d.calls++
	return d.access, nil
}

func TestCompactionWhileOutOfSpaceIsSeen(t *testing.T) {
	ctx := context.Background()
	access := &etcdcluster.Access{Endpoints: []string{etcdtest.Start(t, nil)}}
	cli, err := access.New()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cli.Close() }()
	put := func() int64 { return putK(t, cli) }
	compact := func(rev int64) { compactTo(t, cli, rev) }
	var calls int
	d := newDefragmenter(DefragOptions{}, accessDialer{access, &calls})
	inst := &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db", UID: "u"}}
	outOfSpace := []v1beta1.MemberStatus{{Name: "db-0", ID: "a", Alarms: []string{alarmNoSpace}}, {Name: "db-1", ID: "b", Ready: true}}
	ready := []v1beta1.MemberStatus{{Name: "db-0", ID: "a", Ready: true}, {Name: "db-1", ID: "b", Ready: true}}
	seen := func(members []v1beta1.MemberStatus) bool {
		return d.compactedOutOfSpace(ctx, inst, members, d.accessOnce(ctx, inst))
	}

	for range 5 {
		put()
	}
	if seen(outOfSpace) || seen(outOfSpace) {
		t.Fatal("a compaction seen before any")
	}
	// Deleting keys and compacting up to the delete, as etcd's documentation advises.
	del, err := cli.Delete(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	compact(del.Header.Revision)
	if !seen(outOfSpace) {
		t.Fatal("the compaction up to the delete was not seen")
	}
	if seen(outOfSpace) {
		t.Fatal("the same compaction seen twice")
	}
	// Compacting older history only, below the head, is seen as well.
	head := put()
	put()
	compact(head)
	if !seen(outOfSpace) {
		t.Fatal("a compaction below the head was not seen")
	}
	// Members that are not out of space are not read; once they are again, a history compacted
	// up to its head counts, since it may have been compacted while nobody looked.
	if seen(ready) {
		t.Fatal("a compaction seen on members with space")
	}
	compact(put())
	if !seen(outOfSpace) {
		t.Fatal("a history compacted up to its head, first seen out of space: not seen")
	}
	checkOneDialPerStep(t, d, inst, outOfSpace, &calls)
}

// putK puts key k and returns the revision it made.
func putK(t *testing.T, cli *clientv3.Client) int64 {
	t.Helper()
	resp, err := cli.Put(context.Background(), "k", "v")
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// compactTo compacts the history up to rev.
func compactTo(t *testing.T, cli *clientv3.Client, rev int64) {
	t.Helper()
	if _, err := cli.Compact(context.Background(), rev); err != nil {
		t.Fatal(err)
	}
}

// checkOneDialPerStep checks that a step of d on inst (members outOfSpace) reads the history
// and checks the cluster's health with one answer of the dialer (calls counts them), and that
// forgetting the instance forgets its history.
func checkOneDialPerStep(t *testing.T, d *defragmenter, inst *v1beta1.ETCDInstance, outOfSpace []v1beta1.MemberStatus, calls *int) {
	t.Helper()
	ctx := context.Background()
	*calls = 0
	dial := d.accessOnce(ctx, inst)
	d.compactedOutOfSpace(ctx, inst, outOfSpace, dial)
	if _, err := d.healthyCluster(ctx, dial); err != nil {
		t.Fatalf("health of a one-member cluster: %v", err)
	}
	if *calls != 1 {
		t.Errorf("the dialer was asked %d times in one step, want once", *calls)
	}
	d.forget("ns/db")
	if len(d.oldest) != 0 {
		t.Fatalf("a forgotten instance's history is remembered: %v", d.oldest)
	}
}
