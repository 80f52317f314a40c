package local

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
)

// putAll writes n keys named prefix00… through the member at endpoint alone, retrying each
// write while the cluster elects a leader, and returns the revision of the last.
func putAll(t *testing.T, endpoint, prefix string, n int) int64 {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cli.Close() }()
	var rev int64
	for i := range n {
		deadline := time.Now().Add(20 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			resp, err := cli.Put(ctx, fmt.Sprintf("%s%02d", prefix, i), "v")
			cancel()
			if err == nil {
				rev = resp.Header.Revision
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("writing %s%02d through %s: %v", prefix, i, endpoint, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return rev
}

// TestRecoveryNeverTakesRevisionsBack: rev-0 stops; rev-1 and rev-2 go on without it, a
// quorum, and take writes up to revision ahead; then both are lost for good. The recovery
// can only rebuild from rev-0, which never saw those writes. Restarted with etcd's
// force-new-cluster it kept its own revision, below ahead: the next writes got revisions
// clients had already seen with other data, and a watcher resuming after ahead silently
// missed them. The rebuilt cluster keeps rev-0's keys, its revision is above anything the
// old cluster reached, and reading an old revision answers that it was compacted, so that
// watchers start over.
func TestRecoveryNeverTakesRevisionsBack(t *testing.T) {
	dir := t.TempDir()
	b := newBackend(t, dir)
	defer func() { _ = b.Close() }()
	inst := instance("rev", 3, false)
	converge(t, b, inst)
	idir := filepath.Join(dir, "instances", "ns", "rev")
	st, err := loadState(idir)
	if err != nil {
		t.Fatal(err)
	}
	putAll(t, st.member("rev-0").clientURL(false), "a", 10)
	b.stop(idir, st.member("rev-0"), true)
	ahead := putAll(t, st.member("rev-1").clientURL(false), "b", 20)
	loseMember(t, b, idir, "rev-1")
	loseMember(t, b, idir, "rev-2")

	ctx := context.Background()
	// Scaled down to one member meanwhile: the Recovered Event said "members are added back
	// as learners" whatever spec.replicas asked for.
	one := inst.DeepCopy()
	one.Spec.Replicas = ptr.To[int32](1)
	res, err := b.Recover(ctx, one, backend.RecoverRequest{ID: "req"})
	if err != nil || len(res.Events) != 1 || res.Events[0].Reason != backend.ReasonRecovered {
		t.Fatalf("recover: %+v, %v", res, err)
	}
	if note := res.Events[0].Note; !strings.HasSuffix(note, "; discarded the data of rev-1, rev-2; spec.replicas asks for no other member") {
		t.Fatalf("Recovered Event of a one-member instance: %q", note)
	}
	cli := memberClient(t, b, "rev")
	got, err := cli.Get(ctx, "a", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || got.Count != 10 {
		t.Fatalf("the survivor's keys after the recovery: %+v, %v", got, err)
	}
	put, err := cli.Put(ctx, "after", "v")
	if err != nil {
		t.Fatal(err)
	}
	if put.Header.Revision <= ahead {
		t.Fatalf("a write after the recovery has revision %d, which the old cluster had reached already (%d)", put.Header.Revision, ahead)
	}
	if _, err := cli.Get(ctx, "b", clientv3.WithPrefix(), clientv3.WithRev(ahead)); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Fatalf("reading revision %d of the old cluster: %v, want it compacted", ahead, err)
	}
	// The state records the new member ID the rebuilt member runs with.
	members, err := etcdcluster.MemberList(ctx, cli)
	if err != nil || len(members) != 1 {
		t.Fatalf("membership after the recovery: %+v, %v", members, err)
	}
	if st, err := loadState(idir); err != nil || st.Recovery != nil || len(st.Members) != 1 || st.Members[0].ID != members[0].IDString() {
		t.Fatalf("state after the recovery: %+v, %v; etcd's member %s", st, err, members[0].IDString())
	}
}

// TestRejoiningCountsTheMembersToAdd: the Recovered Event counts the members added back.
func TestRejoiningCountsTheMembersToAdd(t *testing.T) {
	for n, want := range map[int]string{0: "spec.replicas asks for no other member", 1: "1 more member joins it as a learner", 4: "4 more members join it as learners"} {
		if got := rejoining(n); got != want {
			t.Errorf("rejoining(%d) = %q, want %q", n, got, want)
		}
	}
}
