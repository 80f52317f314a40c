package local

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
	"github.com/etcdaas/etcdaas/pkg/snapshot"
	"github.com/etcdaas/etcdaas/pkg/snapshot/snapshottest"
)

// client opens a client to the instance's members.
func client(t *testing.T, d etcdcluster.Dialer, name string) *clientv3.Client {
	t.Helper()
	access, err := d.Access(context.Background(), "ns", name)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := access.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// saveSnapshot streams a snapshot of the instance to a file and verifies it.
func saveSnapshot(t *testing.T, d etcdcluster.Dialer, name, path string) *snapshot.Info {
	t.Helper()
	ctx := context.Background()
	access, err := d.Access(ctx, "ns", name)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := etcdcluster.OpenBestSnapshot(ctx, access)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = snap.Close() }()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, snap); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	info, err := snapshot.Verify(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// leaveSpoolFiles leaves in the instance's spool directory what two interrupted receipts
// leave, one last written two hours ago and one just now, and returns their paths; and what
// a crash in the middle of staging leaves (a snapshot renamed, its request not yet linked),
// two hours ago, returned as staleStaging.
func leaveSpoolFiles(t *testing.T, dir string, inst *v1beta1.ETCDInstance) (stale, fresh string, staleStaging []string) {
	t.Helper()
	instDir, err := instanceDir(dir, inst.Namespace, inst.Name)
	if err != nil {
		t.Fatal(err)
	}
	spool := filepath.Join(instDir, restoreDir)
	if err := os.MkdirAll(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	stale, fresh = filepath.Join(spool, "snapshot-1.part"), filepath.Join(spool, "snapshot-2.part")
	staleStaging = []string{pendingSnapshot(spool, "crashed"), filepath.Join(spool, "request-1.tmp")}
	for _, p := range append([]string{stale, fresh}, staleStaging...) {
		if err := os.WriteFile(p, []byte("half a snapshot"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * time.Hour)
	for _, p := range append([]string{stale}, staleStaging...) {
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	return stale, fresh, staleStaging
}

// stage hands the snapshot at path to the backend as the API server does.
func stage(t *testing.T, dir string, inst *v1beta1.ETCDInstance, path, id string, info *snapshot.Info) error {
	t.Helper()
	internal := internalInstance(inst.Namespace, inst.Name, inst.UID)
	spool, err := Stager{Dir: dir}.SpoolDir(context.Background(), internal)
	if err != nil {
		t.Fatal(err)
	}
	return stageFrom(t, dir, spool, inst, path, id, info)
}

// stageFrom uploads the snapshot at path into spool and stages it.
func stageFrom(t *testing.T, dir, spool string, inst *v1beta1.ETCDInstance, path, id string, info *snapshot.Info) error {
	t.Helper()
	ctx := context.Background()
	stager := Stager{Dir: dir}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(spool, "upload-"+id)
	if err := os.WriteFile(copyPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return stager.Stage(ctx, internalInstance(inst.Namespace, inst.Name, inst.UID), &snapshot.Staged{ID: id, InstanceUID: string(inst.UID), Info: *info, RequestedAt: time.Now()}, copyPath)
}

func values(t *testing.T, cli *clientv3.Client) (map[string]string, int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "k", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = string(kv.Value)
	}
	return out, resp.Header.Revision
}

func TestRestoreRollsBackEveryMember(t *testing.T) {
	dir := t.TempDir()
	b := newBackend(t, dir)
	defer func() { _ = b.Close() }()
	inst := instance("rb", 3, true)
	converge(t, b, inst)
	ctx := context.Background()
	cli := client(t, b, "rb")
	for _, k := range []string{"k1", "k2"} {
		if _, err := cli.Put(ctx, k, "before"); err != nil {
			t.Fatal(err)
		}
	}
	snapPath := filepath.Join(t.TempDir(), "snap.db")
	info := saveSnapshot(t, b, "rb", snapPath)
	if _, err := cli.Put(ctx, "k1", "after"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "k3", "after"); err != nil {
		t.Fatal(err)
	}
	_, revBefore := values(t, cli)

	stale, fresh, staleStaging := leaveSpoolFiles(t, dir, inst)
	spool, err := Stager{Dir: dir}.SpoolDir(ctx, internalInstance(inst.Namespace, inst.Name, inst.UID))
	if err != nil {
		t.Fatal(err)
	}
	checkSpoolSwept(t, stale, fresh, staleStaging)
	if err := stageFrom(t, dir, spool, inst, snapPath, "one", info); err != nil {
		t.Fatal(err)
	}
	// A second restore is refused before its upload, and when staged should it have been
	// uploaded before the first was staged.
	// Both refusals name the restore pending.
	if _, err := (Stager{Dir: dir}).SpoolDir(ctx, internalInstance(inst.Namespace, inst.Name, inst.UID)); !errors.Is(err, snapshot.ErrRestorePending) || !strings.Contains(err.Error(), "restore one") {
		t.Fatalf("a second upload while a restore is pending: want ErrRestorePending naming restore one, got %v", err)
	}
	if err := stageFrom(t, dir, spool, inst, snapPath, "two", info); !errors.Is(err, snapshot.ErrRestorePending) || !strings.Contains(err.Error(), "restore one") {
		t.Fatalf("a second restore while one is pending: want ErrRestorePending naming restore one, got %v", err)
	}
	res, err := b.Sync(ctx, inst)
	if err != nil {
		t.Fatal(err)
	}
	if res.StepReason != backend.StepRestoring {
		t.Fatalf("step reason %q, want %q", res.StepReason, backend.StepRestoring)
	}
	// The restore is told once, as kubectl describe shows it, naming the snapshot and members.
	expectRestoredEvent(t, res, "revision "+strconv.FormatInt(info.Revision, 10), "rb-0, rb-1, rb-2")
	res = converge(t, b, inst)
	if slices.ContainsFunc(res.Events, func(e backend.Event) bool { return e.Reason == backend.ReasonRestored }) {
		t.Errorf("a Sync after the restore records it again: %+v", res.Events)
	}
	if len(res.Members) != 3 {
		t.Fatalf("members after the restore: %+v", res.Members)
	}
	checkRolledBack(t, b, dir, res, revBefore, fresh)
}

// checkSpoolSwept checks what opening the spool directory swept: the spool file of a receipt
// cut short long ago (stale) and the leftovers of a staging cut short (staleStaging) are gone;
// a recent spool file (fresh: a receipt that may be in progress) stays.
func checkSpoolSwept(t *testing.T, stale, fresh string, staleStaging []string) {
	t.Helper()
	// The spool file of a receipt cut short long ago is gone, and so are the leftovers of a
	// staging cut short; a recent spool file (a receipt that may be in progress) stays.
	for _, p := range append([]string{stale}, staleStaging...) {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stale spool file %s: %v, want it deleted", p, err)
		}
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("recent spool file: %v", err)
	}
}

// checkRolledBack checks instance rb after its restore (res the Sync that converged): k1 and
// k2 as before on every member, at a revision past revBefore, the restore's files gone, the
// recent spool file fresh left alone.
func checkRolledBack(t *testing.T, b *Backend, dir string, res *backend.Result, revBefore int64, fresh string) {
	t.Helper()
	cli := client(t, b, "rb")
	got, rev := values(t, cli)
	if len(got) != 2 || got["k1"] != "before" || got["k2"] != "before" {
		t.Fatalf("after the restore: %v, want k1 and k2 as before", got)
	}
	if rev <= revBefore {
		t.Errorf("revision went back from %d to %d", revBefore, rev)
	}
	for _, name := range []string{pendingRequest, "pending-one.db"} {
		if _, err := os.Stat(filepath.Join(dir, "instances", "ns", "rb", restoreDir, name)); !os.IsNotExist(err) {
			t.Errorf("%s is left after the restore: %v", name, err)
		}
	}
	// A recent spool file may be an upload still arriving: the restore leaves it alone.
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("recent spool file after the restore: %v", err)
	}
	// Every member serves the restored data.
	for _, m := range res.Members {
		one, err := (&etcdcluster.Access{Endpoints: []string{m.ClientURL}, TLS: cliTLS(t, dir, "rb")}).New()
		if err != nil {
			t.Fatal(err)
		}
		got, _ := values(t, one)
		_ = one.Close()
		if got["k1"] != "before" || len(got) != 2 {
			t.Errorf("member %s serves %v", m.Name, got)
		}
	}
}

func cliTLS(t *testing.T, dir, name string) *tls.Config {
	t.Helper()
	cfg, err := clientTLS(filepath.Join(dir, "instances", "ns", name))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestRestoreResumesAfterARestart(t *testing.T) {
	dir := t.TempDir()
	b := newBackend(t, dir)
	inst := instance("resume", 3, false)
	// The controller stops after planning and restoring the first member only.
	idir, st, path := planStagedRestore(t, b, dir, inst)
	m := st.Members[0]
	cluster := []snapshot.Member{}
	for _, o := range st.Members {
		cluster = append(cluster, snapshot.Member{Name: o.Name, PeerURL: o.peerURL(false)})
	}
	if err := os.RemoveAll(filepath.Join(idir, m.Name)); err != nil {
		t.Fatal(err)
	}
	if err := snapshot.Restore(snapshot.RestoreConfig{Snapshot: path, DataDir: filepath.Join(idir, m.Name), Member: cluster[0], Cluster: cluster, ClusterToken: st.ClusterToken, RevisionBump: st.Restore.RevisionBump}, nil); err != nil {
		t.Fatal(err)
	}
	st.Restore.Restored = []string{m.Name}
	if err := st.save(idir); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = newBackend(t, dir)
	defer func() { _ = b.Close() }()
	converge(t, b, inst)
	got, _ := values(t, client(t, b, "resume"))
	if got["k"] != "snap" {
		t.Fatalf("after the resumed restore k = %q, want %q", got["k"], "snap")
	}
	st, err := loadState(idir)
	if err != nil || st.Restore != nil {
		t.Fatalf("the restore is still recorded: %+v, %v", st.Restore, err)
	}
}

func TestStagerRefusesUndeployedInstances(t *testing.T) {
	dir := t.TempDir()
	if _, err := (Stager{Dir: dir}).SpoolDir(context.Background(), internalInstance("ns", "none", "uid")); !errors.Is(err, etcdcluster.ErrNoMembers) {
		t.Fatalf("an instance never deployed: want ErrNoMembers, got %v", err)
	}
	b := newBackend(t, dir)
	defer func() { _ = b.Close() }()
	inst := instance("other", 1, false)
	converge(t, b, inst)
	if _, err := (Stager{Dir: dir}).SpoolDir(context.Background(), internalInstance("ns", "other", "a-newer-uid")); !errors.Is(err, etcdcluster.ErrNoMembers) {
		t.Fatalf("another instance's data: want ErrNoMembers, got %v", err)
	}
}

// internalInstance is the instance as the API server's restore subresource hands it over.
func internalInstance(namespace, name string, uid types.UID) *etcdaas.ETCDInstance {
	return &etcdaas.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, UID: uid}}
}

// fileSource serves one snapshot file as the backup every restoreFrom names.
type fileSource struct {
	path, sha256 string
}

func (f fileSource) OpenRestoreSource(_ context.Context, inst *v1beta1.ETCDInstance) (io.ReadCloser, *backend.BackupProvenance, error) {
	file, err := os.Open(f.path)
	if err != nil {
		return nil, nil, err
	}
	return file, &backend.BackupProvenance{Key: "k1.db", SHA256: f.sha256}, nil
}

func TestRestoreFromStartsTheNewClusterFromTheBackup(t *testing.T) {
	snap := snapshottest.Make(t, t.TempDir(), "snap.db", map[string]string{"k1": "from-backup", "k2": "from-backup"})
	info, err := snapshot.Verify(context.Background(), snap)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	b, err := New(Options{Dir: dir, SnapshotCount: 1000, SnapshotCatchUpEntries: 100, StepTimeout: 30 * time.Second, RestoreSource: fileSource{path: snap, sha256: info.SHA256}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Close() }()
	inst := instance("fresh", 3, false)
	inst.Spec.RestoreFrom = &v1beta1.RestoreSource{Instance: "old"}
	res, err := b.Sync(context.Background(), inst)
	if err != nil || res.StepReason != backend.StepRestoring {
		t.Fatalf("first sync: %+v, %v; want the Restoring step", res, err)
	}
	expectRestoredEvent(t, res, "fresh-0", "of old", "2 keys")
	res = converge(t, b, inst)
	for _, m := range res.Members {
		if got := servedAlone(t, m.ClientURL); len(got) != 2 || got["k1"] != "from-backup" {
			t.Errorf("member %s serves %v, want the backup's two keys", m.Name, got)
		}
	}
}

// A server killed while it copied the backup into the instance's spool, or after it built the
// first member from that copy but before deleting it, leaves the copy (as large as the backup)
// behind. The next start's seed must delete both leftovers, not keep one per crash.
func TestRestoreFromDeletesTheCopiesCrashedSeedsLeft(t *testing.T) {
	snap := snapshottest.Make(t, t.TempDir(), "snap.db", map[string]string{"k1": "from-backup"})
	info, err := snapshot.Verify(context.Background(), snap)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	spool := filepath.Join(dir, "instances", "ns", "fresh", restoreDir)
	if err := os.MkdirAll(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	cutShort, err := os.CreateTemp(spool, "snapshot-*.part")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cutShort.Write(make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	_ = cutShort.Close()
	b, err := New(Options{Dir: dir, SnapshotCount: 1000, SnapshotCatchUpEntries: 100, StepTimeout: 30 * time.Second, RestoreSource: fileSource{path: snap, sha256: info.SHA256}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Close() }()
	inst := instance("fresh", 1, false)
	inst.Spec.RestoreFrom = &v1beta1.RestoreSource{Instance: "old"}
	if _, err := b.Sync(context.Background(), inst); err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(spool, "*")); len(left) != 0 {
		t.Fatalf("the seed left %v in the spool", left)
	}

	// Killed after the data directory was built, before the copy was deleted: the member's
	// data is kept, the copy goes.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(spool, "snapshot-1.part"), make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := loadState(filepath.Dir(spool))
	if err != nil {
		t.Fatal(err)
	}
	st.Members[0].ID = "" // its start was never recorded
	if err := st.save(filepath.Dir(spool)); err != nil {
		t.Fatal(err)
	}
	b, err = New(Options{Dir: dir, SnapshotCount: 1000, SnapshotCatchUpEntries: 100, StepTimeout: 30 * time.Second, RestoreSource: fileSource{path: snap, sha256: info.SHA256}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Close() }()
	converge(t, b, inst)
	if left, _ := filepath.Glob(filepath.Join(spool, "*")); len(left) != 0 {
		t.Fatalf("the restarted seed left %v in the spool", left)
	}
	if got, _ := values(t, memberClient(t, b, "fresh")); got["k1"] != "from-backup" {
		t.Fatalf("the instance serves %v, want the backup's key", got)
	}
}

func TestRestoreFromRefusesABackupThatChanged(t *testing.T) {
	snap := snapshottest.Make(t, t.TempDir(), "snap.db", map[string]string{"k": "v"})
	dir := t.TempDir()
	b, err := New(Options{Dir: dir, RestoreSource: fileSource{path: snap, sha256: strings.Repeat("0", 64)}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Close() }()
	inst := instance("tampered", 1, false)
	inst.Spec.RestoreFrom = &v1beta1.RestoreSource{Instance: "old"}
	_, err = b.Sync(context.Background(), inst)
	pe, ok := backend.IsPermanent(err)
	if !ok || pe.Reason != "InvalidBackup" || !strings.Contains(pe.Message, "provenance records") {
		t.Fatalf("want a permanent InvalidBackup error, got %v", err)
	}
	if len(b.Running()) != 0 {
		t.Fatalf("a member runs from a refused backup: %v", b.Running())
	}
	if _, err := os.Stat(filepath.Join(dir, "instances", "ns", "tampered", "tampered-0")); !os.IsNotExist(err) {
		t.Fatalf("the refused backup left a data directory: %v", err)
	}
}

// expectRestoredEvent fails t unless res has exactly one Restored event, whose note has
// every one of wants.
func expectRestoredEvent(t *testing.T, res *backend.Result, wants ...string) {
	t.Helper()
	var notes []string
	for _, e := range res.Events {
		if e.Reason == backend.ReasonRestored {
			notes = append(notes, e.Note)
		}
	}
	if len(notes) != 1 {
		t.Fatalf("Restored events %q in %+v, want one", notes, res.Events)
	}
	for _, w := range wants {
		if !strings.Contains(notes[0], w) {
			t.Errorf("Restored event %q lacks %q", notes[0], w)
		}
	}
}

// A restore records its end (st.Restore cleared) and removes its spool in two steps. A
// controller that dies between them must not restore the snapshot a second time on its next
// start: that would throw away every write the restored cluster took since.
func TestAFinishedRestoreIsNotRepeatedAfterACrash(t *testing.T) {
	dir := t.TempDir()
	b := newBackend(t, dir)
	inst := instance("once", 1, false)
	converge(t, b, inst)
	ctx := context.Background()
	cli := client(t, b, "once")
	if _, err := cli.Put(ctx, "k", "snap"); err != nil {
		t.Fatal(err)
	}
	snapPath := filepath.Join(t.TempDir(), "snap.db")
	info := saveSnapshot(t, b, "once", snapPath)
	if err := stage(t, dir, inst, snapPath, "r1", info); err != nil {
		t.Fatal(err)
	}
	// What the spool holds while the restore is pending, to put back as a crash leaves it.
	spool := filepath.Join(dir, "instances", "ns", "once", restoreDir)
	pending := map[string][]byte{}
	for _, name := range []string{pendingRequest, "pending-r1.db"} {
		data, err := os.ReadFile(filepath.Join(spool, name))
		if err != nil {
			t.Fatal(err)
		}
		pending[name] = data
	}
	converge(t, b, inst)
	if _, err := client(t, b, "once").Put(ctx, "k", "after the restore"); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// The crash: the end of the restore is recorded, its spool still there.
	if err := os.MkdirAll(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, data := range pending {
		if err := os.WriteFile(filepath.Join(spool, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	b = newBackend(t, dir)
	defer func() { _ = b.Close() }()
	converge(t, b, inst)
	if got, _ := values(t, client(t, b, "once")); got["k"] != "after the restore" {
		t.Fatalf("k = %q after the restart, want %q: the restore was repeated", got["k"], "after the restore")
	}
}

// receiving is an upload in progress into a spool directory, as the API server receives one.
type receiving struct {
	body *io.PipeWriter
	done chan receiveResult
}

type receiveResult struct {
	path string
	err  error
}

// startReceiving starts receiving a snapshot into spool; send the body with body.Write.
func startReceiving(spool string) *receiving {
	pr, pw := io.Pipe()
	r := &receiving{body: pw, done: make(chan receiveResult, 1)}
	go func() {
		path, _, err := snapshot.Receive(pr, spool, 0)
		r.done <- receiveResult{path, err}
	}()
	return r
}

// TestTwoRestoresUploadedAtOnce: two uploads pass SpoolDir before either is staged. The first
// is staged and restored while the second is still arriving; the end of the first restore must
// leave the second's spool file alone, so that the second is received, verified and staged (it
// was not refused: nothing was pending when it is staged) and then restored in its turn.
func TestTwoRestoresUploadedAtOnce(t *testing.T) {
	dir := t.TempDir()
	b := newBackend(t, dir)
	defer func() { _ = b.Close() }()
	inst := instance("two", 1, false)
	converge(t, b, inst)
	ctx := context.Background()
	cli := client(t, b, "two")
	snaps := map[string]string{}
	infos := map[string]*snapshot.Info{}
	for _, v := range []string{"first", "second"} {
		if _, err := cli.Put(ctx, "k", v); err != nil {
			t.Fatal(err)
		}
		snaps[v] = filepath.Join(t.TempDir(), v+".db")
		infos[v] = saveSnapshot(t, b, "two", snaps[v])
	}
	stager, internal := Stager{Dir: dir}, internalInstance(inst.Namespace, inst.Name, inst.UID)
	spoolFirst, err := stager.SpoolDir(ctx, internal)
	if err != nil {
		t.Fatal(err)
	}
	spoolSecond, err := stager.SpoolDir(ctx, internal)
	if err != nil {
		t.Fatal(err)
	}
	second, err := os.ReadFile(snaps["second"])
	if err != nil {
		t.Fatal(err)
	}
	upload := startReceiving(spoolSecond)
	if _, err := upload.body.Write(second[:len(second)/2]); err != nil {
		t.Fatal(err)
	}

	if err := stageFrom(t, dir, spoolFirst, inst, snaps["first"], "first", infos["first"]); err != nil {
		t.Fatal(err)
	}
	converge(t, b, inst)
	if got, _ := values(t, client(t, b, "two")); got["k"] != "first" {
		t.Fatalf("after the first restore k = %q, want %q", got["k"], "first")
	}

	if _, err := upload.body.Write(second[len(second)/2:]); err != nil {
		t.Fatal(err)
	}
	_ = upload.body.Close()
	received := <-upload.done
	if received.err != nil {
		t.Fatalf("receiving the second upload: %v", received.err)
	}
	info, err := snapshot.Verify(ctx, received.path)
	if err != nil {
		t.Fatalf("the second upload after the first restore ended: %v", err)
	}
	staged := &snapshot.Staged{ID: "second", InstanceUID: string(inst.UID), Info: *info, RequestedAt: time.Now()}
	if err := stager.Stage(ctx, internal, staged, received.path); err != nil {
		t.Fatalf("staging the second upload once the first restore ended: %v", err)
	}
	converge(t, b, inst)
	if got, _ := values(t, client(t, b, "two")); got["k"] != "second" {
		t.Fatalf("after the second restore k = %q, want %q", got["k"], "second")
	}
}
