package local

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/version"
	clientv3 "go.etcd.io/etcd/client/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
	"github.com/etcdaas/etcdaas/pkg/loopback"
)

func newBackend(t *testing.T, dir string) *Backend {
	t.Helper()
	b, err := New(Options{Dir: dir, SnapshotCount: 1000, SnapshotCatchUpEntries: 100, StepTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func instance(name string, replicas int32, tlsOn bool) *v1beta1.ETCDInstance {
	inst := &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID(name + "-uid")},
		Spec:       v1beta1.ETCDInstanceSpec{Replicas: ptr.To(replicas)},
	}
	if tlsOn {
		inst.Spec.TLS = &v1beta1.TLSSpec{Enabled: true}
	}
	return inst
}

// memberClient opens a client to the voting members of the instance ns/name through the
// backend's Dialer; it is closed when the test ends.
func memberClient(t *testing.T, b *Backend, name string) *clientv3.Client {
	t.Helper()
	access, err := b.Access(context.Background(), "ns", name)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := access.New()
	if err != nil {
		t.Fatal(err)
	}
	return cli
}

// converge calls Sync until it reports convergence.
func converge(t *testing.T, b backend.Backend, inst *v1beta1.ETCDInstance) *backend.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		res, err := b.Sync(ctx, inst)
		if err != nil {
			if _, ok := backend.IsPermanent(err); ok {
				t.Fatalf("permanent error: %v", err)
			}
			last = err
		} else if res.Converged {
			return res
		} else {
			t.Logf("sync: step %q unhealthy %q", res.Step, res.Unhealthy)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("did not converge; last error: %v", last)
	return nil
}

func TestScaleUpDownAndResume(t *testing.T) {
	dir := t.TempDir()
	b := newBackend(t, dir)
	defer func() { _ = b.Close() }()
	inst := instance("scale", 1, false)
	res := converge(t, b, inst)
	if len(res.Members) != 1 || !res.Members[0].Ready || !res.Members[0].Leader {
		t.Fatalf("members after 1: %+v", res.Members)
	}
	ctx := context.Background()
	cli := memberClient(t, b, "scale")
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	_ = cli.Close()

	inst.Spec.Replicas = ptr.To[int32](3)
	res = converge(t, b, inst)
	if len(res.Members) != 3 {
		t.Fatalf("members after 3: %+v", res.Members)
	}
	for _, m := range res.Members {
		if !m.Ready || m.Learner {
			t.Fatalf("member not ready or learner: %+v", m)
		}
		// What each member reports about itself is in its status.
		if m.Version != version.Version || m.DBSize <= 0 || m.DBSizeInUse <= 0 || m.Revision < 2 || len(m.Alarms) != 0 {
			t.Fatalf("member status without what the member reported: %+v", m)
		}
	}
	// Restart: a new backend on the same directory resumes the cluster from its data.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = newBackend(t, dir)
	inst.Spec.Replicas = ptr.To[int32](1)
	res = converge(t, b, inst)
	if len(res.Members) != 1 || res.Members[0].Name != "scale-0" {
		t.Fatalf("members after 1: %+v", res.Members)
	}
	for _, gone := range []string{"scale-1", "scale-2"} {
		if _, err := os.Stat(filepath.Join(dir, "instances", "ns", "scale", gone)); !os.IsNotExist(err) {
			t.Fatalf("data of removed member %s still there: %v", gone, err)
		}
	}
	cli = memberClient(t, b, "scale")
	got, err := cli.Get(ctx, "k")
	if err != nil || len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "v" {
		t.Fatalf("get after scaling: %v %v", got, err)
	}
	members, err := etcdcluster.MemberList(ctx, cli)
	if err != nil || len(members) != 1 {
		t.Fatalf("member list: %v %v", members, err)
	}
	if err := b.Delete(ctx, inst); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "instances", "ns", "scale")); !os.IsNotExist(err) {
		t.Fatalf("instance data left after delete: %v", err)
	}
	if len(b.Running()) != 0 {
		t.Fatalf("members still running after delete: %v", b.Running())
	}
}

func TestTLSAndUnsupportedVersion(t *testing.T) {
	dir := t.TempDir()
	b := newBackend(t, dir)
	defer func() { _ = b.Close() }()
	inst := instance("tls", 1, true)
	res := converge(t, b, inst)
	if got := res.Members[0].ClientURL; got[:8] != "https://" {
		t.Fatalf("client URL %q is not https", got)
	}
	ctx := context.Background()
	access, err := b.Access(ctx, "ns", "tls")
	if err != nil {
		t.Fatal(err)
	}
	if access.TLS == nil {
		t.Fatal("no client TLS for a TLS instance")
	}
	st := etcdcluster.Status(ctx, access, access.Endpoints[0])
	if !st.Healthy {
		t.Fatalf("TLS member unhealthy with the instance's client certificate: %v", st.Err)
	}
	plain := &etcdcluster.Access{Endpoints: access.Endpoints}
	if st := etcdcluster.Status(ctx, plain, access.Endpoints[0]); st.Healthy {
		t.Fatal("a client without the instance's certificate was served")
	}

	// A version the backend cannot run is refused for an instance that has members: they go
	// on running the embedded etcd, and the backend keeps managing them (a scale here).
	inst.Spec.Version = "3.4"
	res, err = b.Sync(ctx, inst)
	if err != nil || !res.Converged || len(res.Members) != 1 || res.RefusedReason != "UnsupportedVersion" ||
		res.Refused != fmt.Sprintf(`etcd version "3.4" is not available: the local backend only runs the embedded etcd %s (spec.version %q or empty); the members keep running the embedded etcd %s`, version.Version, EmbeddedVersion(), version.Version) {
		t.Fatalf("version 3.4 of an instance with members: %+v, %v", res, err)
	}
	inst.Spec.Replicas = ptr.To[int32](2)
	if res := converge(t, b, inst); len(res.Members) != 2 || res.Refused == "" {
		t.Fatalf("scale-up of an instance asking for 3.4: %+v", res)
	}

	bad := instance("old", 1, false)
	bad.Spec.Version = "3.4"
	_, err = b.Sync(ctx, bad)
	pe, ok := backend.IsPermanent(err)
	if !ok || pe.Reason != "UnsupportedVersion" {
		t.Fatalf("version 3.4: got %v", err)
	}
	if _, err := b.Access(ctx, "ns", "old"); err == nil {
		t.Fatal("an instance with an unsupported version has members")
	}
}

// TestResumesHalfDoneChanges simulates a controller that died right after adding a learner
// (before recording its ID) and right after deciding to remove a member (before removing it).
func TestResumesHalfDoneChanges(t *testing.T) {
	dir := t.TempDir()
	b := newBackend(t, dir)
	defer func() { _ = b.Close() }()
	inst := instance("resume", 1, false)
	converge(t, b, inst)
	ctx := context.Background()
	idir := filepath.Join(dir, "instances", "ns", "resume")

	// Died after MemberAddAsLearner: the member is recorded as joining without an ID.
	st, err := loadState(idir)
	if err != nil {
		t.Fatal(err)
	}
	m := memberState{Name: backend.MemberName("resume", st.NextOrdinal), Ordinal: st.NextOrdinal, Phase: phaseJoining, ClusterState: "existing"}
	if m.PeerPort, m.ClientPort, err = b.freePorts(recordedPorts(st.Members)); err != nil {
		t.Fatal(err)
	}
	st.NextOrdinal++
	st.Members = append(st.Members, m)
	if err := st.save(idir); err != nil {
		t.Fatal(err)
	}
	cli := memberClient(t, b, "resume")
	addedID, _, err := etcdcluster.AddLearner(ctx, cli, m.peerURL(false))
	if err != nil {
		t.Fatal(err)
	}
	inst.Spec.Replicas = ptr.To[int32](2)
	res := converge(t, b, inst)
	if len(res.Members) != 2 || res.Members[1].ID != etcdcluster.FormatID(addedID) {
		t.Fatalf("the learner added before the crash was not adopted: %+v", res.Members)
	}
	members, err := etcdcluster.MemberList(ctx, cli)
	if err != nil || len(members) != 2 {
		t.Fatalf("members %+v, %v", members, err)
	}

	// Died after recording the removal, before MemberRemove.
	st, err = loadState(idir)
	if err != nil {
		t.Fatal(err)
	}
	st.Members[1].Phase = phaseRemoving
	if err := st.save(idir); err != nil {
		t.Fatal(err)
	}
	inst.Spec.Replicas = ptr.To[int32](1)
	res = converge(t, b, inst)
	if len(res.Members) != 1 || res.Members[0].Name != "resume-0" {
		t.Fatalf("members after the resumed removal: %+v", res.Members)
	}
	if members, err = etcdcluster.MemberList(ctx, cli); err != nil || len(members) != 1 {
		t.Fatalf("members %+v, %v", members, err)
	}
	if _, err := os.Stat(filepath.Join(idir, "resume-1")); !os.IsNotExist(err) {
		t.Fatalf("data of the removed member left: %v", err)
	}
}

// TestReadvertisesWhenPortsAreTaken restarts a cluster whose recorded ports were taken
// meanwhile: the members move to new ports and the cluster learns the new peer URL.
func TestReadvertisesWhenPortsAreTaken(t *testing.T) {
	dir := t.TempDir()
	b := newBackend(t, dir)
	inst := instance("ports", 3, false)
	converge(t, b, inst)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	idir := filepath.Join(dir, "instances", "ns", "ports")
	st, err := loadState(idir)
	if err != nil {
		t.Fatal(err)
	}
	moved := st.Members[2]
	for _, port := range []int{moved.PeerPort, moved.ClientPort} {
		l, err := net.Listen("tcp", loopback.HostPort(port))
		if err != nil {
			t.Fatalf("occupying port %d: %v", port, err)
		}
		defer func() { _ = l.Close() }()
	}
	b = newBackend(t, dir)
	defer func() { _ = b.Close() }()
	restarted := time.Now()
	res := converge(t, b, inst)
	t.Logf("restarted cluster converged in %s", time.Since(restarted))
	var got *v1beta1.MemberStatus
	for i := range res.Members {
		if res.Members[i].Name == moved.Name {
			got = &res.Members[i]
		}
	}
	if got == nil || got.PeerURL == moved.peerURL(false) || got.ClientURL == moved.clientURL(false) || !got.Ready {
		t.Fatalf("member %s did not move off its taken ports: %+v", moved.Name, got)
	}
	cli := memberClient(t, b, "ports")
	members, err := etcdcluster.MemberList(context.Background(), cli)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if m.Name == moved.Name && (len(m.PeerURLs) != 1 || m.PeerURLs[0] != got.PeerURL) {
			t.Fatalf("the cluster still has peer URLs %v for %s, want %s", m.PeerURLs, m.Name, got.PeerURL)
		}
	}
}

// loseMember stops the member name and puts a file where its data directory was, so that
// it cannot start again: a member whose disk is gone.
func loseMember(t *testing.T, b *Backend, idir, name string) {
	t.Helper()
	st, err := loadState(idir)
	if err != nil {
		t.Fatal(err)
	}
	b.stop(idir, st.member(name), true)
	data := filepath.Join(idir, name)
	if err := os.RemoveAll(data); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(data, []byte("lost"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLostMembersAndQuorumLoss(t *testing.T) {
	dir := t.TempDir()
	b := newBackend(t, dir)
	defer func() { _ = b.Close() }()
	inst := instance("q", 3, false)
	converge(t, b, inst)
	idir := filepath.Join(dir, "instances", "ns", "q")
	ctx := context.Background()
	putKeys(t, ctx, b, "q", 50)
	if _, err := b.Recover(ctx, inst, backend.RecoverRequest{ID: "req-0"}); !errors.Is(err, backend.ErrCannotRecover) {
		t.Fatalf("recover with quorum: %v", err)
	}

	// One member of three lost: unhealthy with the reason, quorum holds.
	loseMember(t, b, idir, "q-2")
	res, err := b.Sync(ctx, inst)
	if err != nil || res.Converged || res.QuorumLost != "" || !strings.Contains(res.Unhealthy, "q-2: cannot start") {
		t.Fatalf("sync with one member lost: %+v, %v", res, err)
	}

	// Two of three lost: quorum lost, and nothing changes.
	loseMember(t, b, idir, "q-1")
	res, err = b.Sync(ctx, inst)
	if err != nil || res.Converged || res.Step != "" {
		t.Fatalf("sync with two members lost: %+v, %v", res, err)
	}
	if want := "quorum lost: 2 of 3 voting members do not answer (q-1, q-2); 2 are needed"; res.QuorumLost != want {
		t.Fatalf("quorum lost %q, want %q", res.QuorumLost, want)
	}
	st, err := loadState(idir)
	if err != nil || len(st.Members) != 3 || st.NextOrdinal != 3 {
		t.Fatalf("membership changed after quorum loss: %+v, %v", st, err)
	}
	if running := b.Running(); len(running) != 1 || filepath.Base(running[0]) != "q-0" {
		t.Fatalf("running after quorum loss: %v", running)
	}

	// Recovery from a named member that is lost fails; from the survivor it rebuilds the
	// cluster, and Syncs add members back with new ordinals.
	if _, err := b.Recover(ctx, inst, backend.RecoverRequest{ID: "req-1", Member: "q-1"}); !errors.Is(err, backend.ErrCannotRecover) {
		t.Fatalf("recover from a lost member: %v", err)
	}
	recovering := time.Now()
	res, err = b.Recover(ctx, inst, backend.RecoverRequest{ID: "req-2"})
	if err != nil || len(res.Events) != 1 || res.Events[0].Reason != backend.ReasonRecovered || !strings.Contains(res.Events[0].Note, "from member q-0") ||
		!strings.Contains(res.Events[0].Note, "discarded the data of q-1, q-2;") {
		t.Fatalf("recover: %+v, %v", res, err)
	}
	res = converge(t, b, inst)
	// The same request again (its consumption failed) was carried out; another is refused.
	if _, err := b.Recover(ctx, inst, backend.RecoverRequest{ID: "req-2"}); !errors.Is(err, backend.ErrRecoveredAlready) {
		t.Fatalf("the request carried out, again: %v, want ErrRecoveredAlready", err)
	}
	if _, err := b.Recover(ctx, inst, backend.RecoverRequest{ID: "req-3"}); !errors.Is(err, backend.ErrCannotRecover) || !strings.Contains(err.Error(), "quorum is not lost") {
		t.Fatalf("a new request once quorum is back: %v, want ErrCannotRecover", err)
	}
	t.Logf("FIGURE local backend: quorum loss recovered to 3 members in %s", time.Since(recovering).Round(time.Millisecond))
	var names []string
	for _, m := range res.Members {
		names = append(names, m.Name)
	}
	if !slices.Equal(names, []string{"q-0", "q-3", "q-4"}) {
		t.Fatalf("members after recovery: %v", names)
	}
	checkKeysKept(t, ctx, b, "q", 50)
}

// instanceClient is a client of instance ns/name; the caller closes it.
func instanceClient(t *testing.T, ctx context.Context, b *Backend, name string) *clientv3.Client {
	t.Helper()
	access, err := b.Access(ctx, "ns", name)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := access.New()
	if err != nil {
		t.Fatal(err)
	}
	return cli
}

// putKeys writes the n keys k00.. into instance ns/name.
func putKeys(t *testing.T, ctx context.Context, b *Backend, name string, n int) {
	t.Helper()
	cli := instanceClient(t, ctx, b, name)
	defer func() { _ = cli.Close() }()
	for i := range n {
		if _, err := cli.Put(ctx, fmt.Sprintf("k%02d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
}

// checkKeysKept checks that instance ns/name holds n keys under k.
func checkKeysKept(t *testing.T, ctx context.Context, b *Backend, name string, n int) {
	t.Helper()
	cli := instanceClient(t, ctx, b, name)
	defer func() { _ = cli.Close() }()
	got, err := cli.Get(ctx, "k", clientv3.WithPrefix())
	if err != nil || len(got.Kvs) != n {
		t.Fatalf("keys after recovery: %v, %v", got, err)
	}
}

// TestForgetDropsOnlyTheInstancesRecords: what is remembered in memory of an instance's
// members (health, a server that died, a start error) goes with Forget; another instance's,
// whose name shares a prefix, stays.
func TestForgetDropsOnlyTheInstancesRecords(t *testing.T) {
	b, err := New(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	b.health.Now = func() time.Time { return now }
	var keys []string
	for _, name := range []string{"db", "db2"} {
		dir, err := instanceDir(b.opts.Dir, "ns", name)
		if err != nil {
			t.Fatal(err)
		}
		key := filepath.Join(dir, name+"-0")
		keys = append(keys, key)
		b.health.Unhealthy(key)
		b.died[key], b.startErrs[key] = true, errors.New("boom")
	}
	now = now.Add(time.Hour)
	b.Forget("ns", "db")
	if b.died[keys[0]] || b.startErrs[keys[0]] != nil || b.health.Unhealthy(keys[0]) != 0 {
		t.Errorf("ns/db is still remembered: died %v, start error %v", b.died[keys[0]], b.startErrs[keys[0]])
	}
	if !b.died[keys[1]] || b.startErrs[keys[1]] == nil || b.health.Unhealthy(keys[1]) != time.Hour {
		t.Errorf("ns/db2 was forgotten with ns/db")
	}
}

// A scale from two members to one whose process stopped after recording the removal and
// before MemberRemove: the restarted backend must start the member being removed again, or
// the remaining member alone has no quorum to remove it with, and the instance is stuck.
// Stopped after MemberRemove instead, the removed member that starts again stops on its own.
func TestResumesARemovalAfterARestart(t *testing.T) {
	for _, removed := range []bool{false, true} {
		t.Run(fmt.Sprintf("removed=%v", removed), func(t *testing.T) { resumeRemovalAfterRestart(t, removed) })
	}
}

func resumeRemovalAfterRestart(t *testing.T, removed bool) {
	dir := t.TempDir()
	b := newBackend(t, dir)
	inst := instance("restart", 2, false)
	converge(t, b, inst)
	idir := filepath.Join(dir, "instances", "ns", "restart")
	st, err := loadState(idir)
	if err != nil {
		t.Fatal(err)
	}
	st.Members[1].Phase = phaseRemoving
	if err := st.save(idir); err != nil {
		t.Fatal(err)
	}
	if removed {
		// etcd refuses a removal right after the member joined: retry, as finishRemove does.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := removeWithRetry(ctx, memberClient(t, b, "restart"), st.Members[1].id())
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = newBackend(t, dir)
	defer func() { _ = b.Close() }()
	inst.Spec.Replicas = ptr.To[int32](1)
	ctx, cancel := context.WithTimeout(context.Background(), 75*time.Second)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		res, err := b.Sync(ctx, inst)
		if err == nil && res.Converged {
			if len(res.Members) != 1 || res.Members[0].Name != "restart-0" {
				t.Fatalf("members after the resumed removal: %+v", res.Members)
			}
			members, err := etcdcluster.MemberList(ctx, memberClient(t, b, "restart"))
			if err != nil || len(members) != 1 {
				t.Fatalf("members %+v, %v", members, err)
			}
			if _, err := os.Stat(filepath.Join(idir, "restart-1")); !os.IsNotExist(err) {
				t.Fatalf("data of the removed member left: %v", err)
			}
			return
		}
		if err != nil {
			last = err
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the removal was not resumed; last error: %v", last)
}

// A scale from three members to two resumed after a restart that found another member lost:
// removing the member being removed would leave one healthy member of two, a cluster without
// quorum. The removal is put off instead: the member votes again, and the cluster keeps
// serving with the two members that run.
func TestAResumedRemovalKeepsQuorum(t *testing.T) {
	dir := t.TempDir()
	b := newBackend(t, dir)
	inst := instance("guard", 3, false)
	converge(t, b, inst)
	idir := filepath.Join(dir, "instances", "ns", "guard")
	st, err := loadState(idir)
	if err != nil {
		t.Fatal(err)
	}
	st.Members[2].Phase = phaseRemoving
	if err := st.save(idir); err != nil {
		t.Fatal(err)
	}
	loseMember(t, b, idir, "guard-1")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = newBackend(t, dir)
	defer func() { _ = b.Close() }()
	inst.Spec.Replicas = ptr.To[int32](2)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var res *backend.Result
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if res, err = b.Sync(ctx, inst); err == nil && res.Converged {
			t.Fatalf("converged with a lost member: %+v", res.Members)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The lost member is reported (and replaced once the grace period is over).
	if err != nil || !strings.Contains(res.Unhealthy, "guard-1") {
		t.Fatalf("last sync: %v, unhealthy %q; want guard-1 reported unhealthy", err, res.Unhealthy)
	}
	cli := memberClient(t, b, "guard")
	putCtx, putCancel := context.WithTimeout(ctx, 10*time.Second)
	defer putCancel()
	if _, err := cli.Put(putCtx, "k", "v"); err != nil {
		t.Fatalf("the cluster lost quorum: %v", err)
	}
	members, err := etcdcluster.MemberList(ctx, cli)
	if err != nil || len(members) != 3 {
		t.Fatalf("members %+v, %v; want all three until the lost one is replaced", members, err)
	}
	if st, err := loadState(idir); err != nil || st.member("guard-2").Phase != phaseVoting {
		t.Fatalf("guard-2 after the removal was put off: %+v, %v", st.member("guard-2"), err)
	}
}

// TestQuotaBackendBytesIsTheMembersQuota: the quota exported for the members is the
// --quota-backend-bytes they run with: etcd's default unless the controller sets one.
func TestQuotaBackendBytesIsTheMembersQuota(t *testing.T) {
	for _, tc := range []struct{ set, want int64 }{{0, 2 << 30}, {1 << 30, 1 << 30}} {
		b, err := New(Options{Dir: t.TempDir(), QuotaBackendBytes: tc.set})
		if err != nil {
			t.Fatal(err)
		}
		if got := backend.QuotaBackendBytes(b, &v1beta1.ETCDInstance{}); got != tc.want {
			t.Errorf("--quota-backend-bytes=%d: quota %d, want %d", tc.set, got, tc.want)
		}
		_ = b.Close()
	}
}
