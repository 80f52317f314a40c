package etcdcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/api/v3/version"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/etcdaas/etcdaas/pkg/etcdtest"
	"github.com/etcdaas/etcdaas/pkg/loopback"
	"github.com/etcdaas/etcdaas/pkg/snapshot"
)

func freePort(t *testing.T) int {
	t.Helper()
	return freePorts(t, 1)[0]
}

// freePorts returns n distinct free ports, found at once: lookups one after the other may
// return the same port.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	ports, err := loopback.FreePorts(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}

// deadlineOnCue is a context whose deadline passes when expire is called rather than at a
// time, so that a test decides during which call it ends, however slow the machine.
type deadlineOnCue struct {
	context.Context // never done; gives Deadline and Value
	done            chan struct{}
	once            sync.Once
}

func newDeadlineOnCue() *deadlineOnCue {
	return &deadlineOnCue{Context: context.Background(), done: make(chan struct{})}
}

func (c *deadlineOnCue) Done() <-chan struct{} { return c.done }

func (c *deadlineOnCue) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

func (c *deadlineOnCue) expire() { c.once.Do(func() { close(c.done) }) }

// learnerBehindThenDeadline answers the first MemberPromote as etcd answers for a learner
// that is not yet in sync, and holds the second until its context ends, having let deadline
// pass: the deadline passes during an attempt, after the learner was found behind. It counts
// the MemberPromote calls in calls; other calls go to etcd.
func learnerBehindThenDeadline(deadline *deadlineOnCue, calls *atomic.Int32) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if !strings.HasSuffix(method, "/MemberPromote") {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		if calls.Add(1) == 1 {
			return rpctypes.ErrGRPCLearnerNotReady
		}
		deadline.expire()
		<-ctx.Done()
		return status.FromContextError(ctx.Err()).Err() // as gRPC ends a call whose context ended
	}
}

// startMember starts a one-member cluster configured by configure (nil: etcd's defaults) and
// returns its endpoint, its Access and a client closed when the test ends.
func startMember(t *testing.T, configure func(*embed.Config)) (string, *Access, *clientv3.Client) {
	t.Helper()
	endpoint := etcdtest.Start(t, configure)
	access := &Access{Endpoints: []string{endpoint}}
	cli, err := access.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return endpoint, access, cli
}

// smallQuota gives a member a database quota of 1 MiB, reached by a few writes. The quota is
// checked against the database file, which grows only when the backend commits: it commits
// after every write, so that fast writes cannot all land in one batch.
func smallQuota(cfg *embed.Config) {
	cfg.QuotaBackendBytes = 1 << 20
	cfg.BackendBatchLimit = 1
}

func TestMembershipAndSnapshots(t *testing.T) {
	ctx := context.Background()
	endpoint, access, cli := startMember(t, nil)
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}

	members, err := MemberList(ctx, cli)
	if err != nil || len(members) != 1 || members[0].Name != "m" || members[0].IsLearner {
		t.Fatalf("members %+v, %v", members, err)
	}
	if id, err := ParseID(members[0].IDString()); err != nil || id != members[0].ID {
		t.Fatalf("ID round trip: %v %v", id, err)
	}

	checkLearnerNotPromoted(t, ctx, access, cli)

	statuses := StatusAll(ctx, access, access.Endpoints)
	if !statuses[0].Healthy || !statuses[0].IsLeader() || statuses[0].Revision < 2 {
		t.Fatalf("status %+v", statuses[0])
	}
	if err := MoveLeaderAway(ctx, access, members[0].ID, members, statuses); err == nil {
		t.Fatal("moved leadership away from the only member")
	}
	if err := MoveLeaderAway(ctx, access, members[0].ID+1, members, statuses); err != nil {
		t.Fatalf("moving leadership away from a follower is a no-op: %v", err)
	}

	checkSnapshotSource(t, ctx, endpoint)
}

// checkLearnerNotPromoted adds a learner that never starts to the cluster cli talks to, checks
// that Promote says why it cannot promote it, and removes it (twice).
func checkLearnerNotPromoted(t *testing.T, ctx context.Context, access *Access, cli *clientv3.Client) {
	t.Helper()
	// A learner that never starts cannot be promoted; Promote retries until its context ends.
	learnerPeer := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	id, after, err := AddLearner(ctx, cli, learnerPeer)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != 2 {
		t.Fatalf("membership after adding a learner: %+v", after)
	}
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	err = Promote(pctx, cli, id)
	cancel()
	if err == nil || !strings.Contains(err.Error(), "not in sync") {
		t.Fatalf("promoting a learner that never started: %v", err)
	}
	// Also when the context ends during an attempt (a slow answer on a busy machine): the
	// error still says why the learner was not promoted. The interceptor sits below the
	// client's own retrying interceptor, where etcd's answers come in.
	deadline, calls := newDeadlineOnCue(), &atomic.Int32{}
	behind, err := access.newClient([]grpc.DialOption{grpc.WithChainUnaryInterceptor(learnerBehindThenDeadline(deadline, calls))})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = behind.Close() }()
	err = Promote(deadline, behind, id)
	if err == nil || !strings.Contains(err.Error(), "not in sync") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("promoting a learner found behind, the context ending during the next attempt: %v", err)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("Promote made %d MemberPromote calls, want 2 (one answered \"not in sync\", one in flight at the deadline)", n)
	}
	if err := Remove(ctx, cli, id); err != nil {
		t.Fatal(err)
	}
	if err := Remove(ctx, cli, id); err != nil {
		t.Fatalf("removing a member twice: %v", err)
	}
}

// checkSnapshotSource checks that the best snapshot source is the member at endpoint when
// another is unreachable, the errors without one, and the snapshot it gives.
func checkSnapshotSource(t *testing.T, ctx context.Context, endpoint string) {
	t.Helper()
	// The snapshot source skips unreachable members; with none reachable, it says why.
	dead := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	mixed := &Access{Endpoints: []string{dead, endpoint}}
	best, err := BestSnapshotSource(ctx, mixed)
	if err != nil || best.Endpoint != endpoint {
		t.Fatalf("best source %+v, %v", best, err)
	}
	if _, err := BestSnapshotSource(ctx, &Access{Endpoints: []string{dead}}); !errors.Is(err, ErrNoHealthyMember) || !strings.Contains(err.Error(), dead) {
		t.Fatalf("no healthy member: %v", err)
	}
	if _, err := BestSnapshotSource(ctx, &Access{}); !errors.Is(err, ErrNoMembers) {
		t.Fatalf("no members: %v", err)
	}

	snap, err := OpenBestSnapshot(ctx, mixed)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, snap)
	if err != nil || n < 4096 {
		t.Fatalf("snapshot: %d bytes, %v", n, err)
	}
	if snap.Revision != best.Revision || snap.Endpoint != endpoint || snap.Version == "" {
		t.Fatalf("snapshot metadata %+v", snap)
	}
	if err := snap.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestStatusReportsVersionSizesAndAlarms(t *testing.T) {
	ctx := context.Background()
	endpoint, access, cli := startMember(t, smallQuota)

	st := Status(ctx, access, endpoint)
	if !st.Healthy || st.Version != version.Version || st.DBSize <= 0 || st.DBSizeInUse <= 0 || st.DBSizeInUse > st.DBSize || len(st.Alarms) != 0 {
		t.Fatalf("status of a fresh member: %+v", st)
	}

	// Writing past the 1 MiB quota raises NOSPACE on the member.
	value := strings.Repeat("x", 64*1024)
	var putErr error
	for i := 0; i < 256 && putErr == nil; i++ {
		_, putErr = cli.Put(ctx, fmt.Sprintf("k%d", i), value)
	}
	if putErr == nil {
		t.Fatal("16 MiB of writes fit in a 1 MiB quota")
	}
	checkOutOfSpaceStatus(t, access, endpoint)
	checkDefragmentAndDisarm(t, access, cli, endpoint)
	if err := Defragment(ctx, &Access{Endpoints: []string{"http://127.0.0.1:1"}}, "http://127.0.0.1:1", time.Second); err == nil {
		t.Fatal("defragmenting an endpoint nobody listens on succeeded")
	}
}

// checkOutOfSpaceStatus checks what the member at endpoint, out of space, reports: the
// NOSPACE alarm, unhealthy but serving, its probes keeping it ready and live while the plain
// health check reports the alarm.
func checkOutOfSpaceStatus(t *testing.T, access *Access, endpoint string) {
	t.Helper()
	st := Status(context.Background(), access, endpoint)
	if st.Healthy || !slices.Equal(st.Alarms, []string{"NOSPACE"}) || st.Err == nil || !strings.Contains(st.Err.Error(), "NOSPACE") {
		t.Fatalf("status of a member out of space: %+v", st)
	}
	if st.Revision < 2 {
		t.Fatalf("revision %d after writes", st.Revision)
	}
	if !st.Serving {
		t.Fatalf("a member out of space still serves reads and deletes: %+v", st)
	}
	// Its probes keep it ready and live, so that it can be defragmented; the plain health
	// check reports the alarm.
	for path, want := range map[string]int{ReadinessPath: http.StatusOK, LivenessPath: http.StatusOK, "/health?serializable=true": http.StatusServiceUnavailable} {
		resp, err := http.Get(endpoint + path)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s of a member out of space: %d, want %d", path, resp.StatusCode, want)
		}
	}
}

// checkDefragmentAndDisarm checks that, on the member at endpoint out of space, deleting and
// compacting frees space inside the file, defragmenting returns it, and disarming the alarm
// (not defragmenting alone) lets writes in again.
func checkDefragmentAndDisarm(t *testing.T, access *Access, cli *clientv3.Client, endpoint string) {
	t.Helper()
	ctx := context.Background()
	del, err := cli.Delete(ctx, "k", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, del.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	before := Status(ctx, access, endpoint)
	if err := Defragment(ctx, access, endpoint, time.Minute); err != nil {
		t.Fatal(err)
	}
	after := Status(ctx, access, endpoint)
	if after.DBSize >= before.DBSize {
		t.Fatalf("defragmenting did not shrink the file: before %+v, after %+v", before, after)
	}
	if _, err := cli.Put(ctx, "after-defrag", "v"); err == nil {
		t.Fatal("a write succeeded with the NOSPACE alarm still raised")
	}
	if err := DisarmNoSpace(ctx, access, after.MemberID); err != nil {
		t.Fatal(err)
	}
	if st := Status(ctx, access, endpoint); !st.Healthy || len(st.Alarms) != 0 {
		t.Fatalf("status after disarming: %+v", st)
	}
	if _, err := cli.Put(ctx, "after-defrag", "v"); err != nil {
		t.Fatalf("write after disarming: %v", err)
	}
}

// TestSnapshotOfAMemberOutOfSpace: a member whose database reached its quota (NOSPACE) refuses
// writes but still serves reads and snapshots, so a backup (scheduled or GET /backup) is taken
// from it, with every key: that is when one is wanted most, before keys are deleted to free
// space. It was refused as "no healthy member" while the alarm was raised.
func TestSnapshotOfAMemberOutOfSpace(t *testing.T) {
	ctx := context.Background()
	endpoint, access, cli := startMember(t, smallQuota)
	value := strings.Repeat("x", 64*1024)
	written := 0
	for ; written < 256; written++ {
		if _, err := cli.Put(ctx, fmt.Sprintf("k%03d", written), value); err != nil {
			break
		}
	}
	if st := Status(ctx, access, endpoint); !slices.Equal(st.Alarms, []string{"NOSPACE"}) || written == 0 {
		t.Fatalf("after %d writes the member is not out of space: %+v", written, st)
	}

	snap, err := OpenBestSnapshot(ctx, access)
	if err != nil {
		t.Fatalf("snapshot of a member out of space: %v", err)
	}
	path := filepath.Join(t.TempDir(), "snap.db")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(f, snap)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err := errors.Join(err, snap.Close()); err != nil {
		t.Fatal(err)
	}
	info, err := snapshot.Verify(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if info.TotalKeys < written {
		t.Fatalf("the snapshot holds %d keys, want the %d written", info.TotalKeys, written)
	}
}

// TestNoSnapshotOfACorruptMember: a member with a CORRUPT alarm raised on it still answers
// reads (etcd refuses its writes only), but its data failed etcd's corruption check: no
// backup is taken from it, where a member out of space serves one.
func TestNoSnapshotOfACorruptMember(t *testing.T) {
	ctx := context.Background()
	endpoint, access, cli := startMember(t, nil)
	st := Status(ctx, access, endpoint)
	if _, err := pb.NewMaintenanceClient(cli.ActiveConnection()).Alarm(ctx, &pb.AlarmRequest{
		Action: pb.AlarmRequest_ACTIVATE, MemberID: st.MemberID, Alarm: pb.AlarmType_CORRUPT,
	}); err != nil {
		t.Fatal(err)
	}
	if st := Status(ctx, access, endpoint); !slices.Equal(st.Alarms, []string{"CORRUPT"}) {
		t.Fatalf("the member does not report its CORRUPT alarm: %+v", st)
	}
	snap, err := OpenBestSnapshot(ctx, access)
	if err == nil {
		_ = snap.Close()
		t.Fatal("a snapshot was taken of a member with a CORRUPT alarm")
	}
	if !errors.Is(err, ErrNoHealthyMember) || !strings.Contains(err.Error(), "CORRUPT") {
		t.Fatalf("snapshot of a corrupt member: %v, want ErrNoHealthyMember naming the alarm", err)
	}
}
