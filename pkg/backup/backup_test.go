package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/snapshot"
	"github.com/etcdaas/etcdaas/pkg/snapshot/snapshottest"
	"github.com/etcdaas/etcdaas/test/s3server"
)

// clock returns a time that moves one minute per call, so that keys differ and sort.
func clock(start time.Time) func() time.Time {
	t := start
	return func() time.Time {
		t = t.Add(time.Minute)
		return t
	}
}

// payload is n random bytes shaped as an etcd snapshot: padded to whole 512-byte blocks and
// followed by their sha256, which Take checks.
func payload(n int, seed int64) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return snapshottest.WithHash(b)
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestKeysSortByTime(t *testing.T) {
	base := time.Date(2026, 11, 29, 3, 5, 9, 0, time.UTC)
	a := Key(base, 999)
	b := Key(base.Add(time.Millisecond), 5)
	c := Key(base.Add(24*time.Hour), 1)
	if !(a < b && b < c) {
		t.Fatalf("keys do not sort by time: %s %s %s", a, b, c)
	}
	for _, k := range []string{a, b, c} {
		if !IsKey(k) {
			t.Errorf("IsKey(%q) = false", k)
		}
	}
	for _, k := range []string{"", "x.db", "20261129T030509.000Z-r12.db.json", "../20261129T030509.000Z-r12.db", "20261129T030509.000Z-rx.db"} {
		if IsKey(k) {
			t.Errorf("IsKey(%q) = true", k)
		}
	}
}

// testDestination runs the behaviour every destination shares.
func testDestination(t *testing.T, dest Destination) {
	ctx := context.Background()
	now := clock(time.Date(2026, 11, 29, 3, 0, 0, 0, time.UTC))

	if got, err := dest.List(ctx); err != nil || len(got) != 0 {
		t.Fatalf("empty destination lists %v, %v", got, err)
	}
	if _, err := Newest(ctx, dest, "uid-1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Newest of an empty destination: %v, want ErrNotFound", err)
	}

	taken, bodies := takeThree(t, ctx, dest, now)

	// A failing stream leaves nothing behind.
	broken := io.MultiReader(bytes.NewReader(payload(1000, 9)), &failingReader{})
	if _, err := Take(ctx, dest, Snapshot{Reader: broken, Revision: 7}, "uid-1", now); err == nil {
		t.Fatal("a broken stream made a backup")
	}

	checkDamagedStreamsRefused(t, ctx, dest, now)
	checkListedAndRead(t, ctx, dest, taken, bodies)

	deleted, err := Prune(ctx, dest, taken[2], 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(deleted) != 1 || deleted[0] != taken[0].Key {
		t.Fatalf("pruned %v, want the oldest %s", deleted, taken[0].Key)
	}
	newest, err := Newest(ctx, dest, "uid-1")
	if err != nil || newest.Key != taken[2].Key {
		t.Fatalf("newest %+v, %v; want %s", newest, err, taken[2].Key)
	}
	if _, err := Prune(ctx, dest, taken[2], 0); err == nil {
		t.Fatal("Prune with keep 0 deleted everything")
	}

	checkForeignBackupsApart(t, ctx, dest, taken, now)
}

// takeThree takes three backups of instance uid-1 into dest, one larger than an S3 part so that
// the upload is multipart, and returns their infos and bodies, oldest first.
func takeThree(t *testing.T, ctx context.Context, dest Destination, now func() time.Time) ([]Info, [][]byte) {
	t.Helper()
	// Three backups, one larger than an S3 part so that the upload is multipart.
	var taken []Info
	var bodies [][]byte
	for i, size := range []int{4096, S3PartSize + 12345, 1} {
		body := payload(size, int64(i))
		info, err := Take(ctx, dest, Snapshot{Reader: bytes.NewReader(body), Revision: int64(100 + i), EtcdVersion: "3.7.3"}, "uid-1", now)
		if err != nil {
			t.Fatalf("backup %d: %v", i, err)
		}
		if info.SHA256 != sum(body) || info.Size != int64(len(body)) || info.Revision != int64(100+i) {
			t.Fatalf("backup %d: info %+v does not describe what was written", i, info)
		}
		taken = append(taken, info)
		bodies = append(bodies, body)
	}
	return taken, bodies
}

// checkListedAndRead checks that dest lists the backups taken, newest first, and reads one
// back as it was written.
func checkListedAndRead(t *testing.T, ctx context.Context, dest Destination, taken []Info, bodies [][]byte) {
	t.Helper()
	listed, err := dest.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != 3 {
		t.Fatalf("listed %d backups, want 3: %+v", len(listed), listed)
	}
	for i, got := range listed {
		want := taken[len(taken)-1-i] // newest first
		if got.Key != want.Key || got.SHA256 != want.SHA256 || got.Size != want.Size || got.Revision != want.Revision ||
			got.InstanceUID != "uid-1" || got.EtcdVersion != "3.7.3" || !got.Time.Equal(want.Time) {
			t.Errorf("listed[%d] = %+v, want %+v", i, got, want)
		}
	}

	r, info, err := dest.Open(ctx, taken[1].Key)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(r)
	_ = r.Close()
	if err != nil || !bytes.Equal(data, bodies[1]) || info.SHA256 != sum(data) {
		t.Fatalf("reading back %s: %d bytes, %v; sha %s", taken[1].Key, len(data), err, info.SHA256)
	}
	if _, _, err := dest.Open(ctx, Key(time.Now(), 1)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("opening a missing key: %v, want ErrNotFound", err)
	}
}

// checkForeignBackupsApart checks that another instance's backup in dest is neither counted
// nor deleted by uid-1's pruning, nor taken for uid-1's newest.
func checkForeignBackupsApart(t *testing.T, ctx context.Context, dest Destination, taken []Info, now func() time.Time) {
	t.Helper()
	// Another instance sharing the destination: its backup is neither counted nor deleted.
	foreign, err := Take(ctx, dest, Snapshot{Reader: bytes.NewReader(payload(10, 7)), Revision: 5, EtcdVersion: "3.7.3"}, "uid-other", now)
	if err != nil {
		t.Fatal(err)
	}
	deleted, err := Prune(ctx, dest, taken[2], 1)
	if err != nil || len(deleted) != 1 || deleted[0] != taken[1].Key {
		t.Fatalf("pruned %v, %v; want only %s", deleted, err, taken[1].Key)
	}
	if _, err := Prune(ctx, dest, foreign, 1); err != nil {
		t.Fatal(err)
	}
	left, err := dest.List(ctx)
	if err != nil || len(left) != 2 || left[0].Key != foreign.Key || left[1].Key != taken[2].Key {
		t.Fatalf("after pruning each instance to 1: %+v, %v; want %s and %s", left, err, foreign.Key, taken[2].Key)
	}
	// The newest backup of an instance is its own, even when another's is newer.
	if newest, err := Newest(ctx, dest, "uid-1"); err != nil || newest.Key != taken[2].Key {
		t.Fatalf("newest of uid-1 next to a newer foreign backup: %+v, %v; want %s", newest, err, taken[2].Key)
	}
	if _, err := Newest(ctx, dest, "uid-never"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "uid-never") {
		t.Fatalf("newest of an instance without backups: %v, want ErrNotFound naming its UID", err)
	}
}

// checkDamagedStreamsRefused checks that Take refuses a stream that is not an intact
// snapshot (a byte changed, cut short, shorter than a snapshot can be, a large one whose first
// parts were uploaded already), saying it is truncated or corrupt; what is listed afterwards
// is checked by the caller.
func checkDamagedStreamsRefused(t *testing.T, ctx context.Context, dest Destination, now func() time.Time) {
	t.Helper()
	flip := func(b []byte, at int) []byte {
		b = bytes.Clone(b)
		b[at] ^= 0xFF
		return b
	}
	good := payload(2000, 11)
	large := payload(S3PartSize+12345, 12)
	for name, stream := range map[string][]byte{
		"a byte changed":           flip(good, 700),
		"its hash changed":         flip(good, len(good)-1),
		"cut at a block":           good[:len(good)-512],
		"cut in a block":           good[:len(good)-100],
		"shorter than a snapshot":  good[:10],
		"empty":                    nil,
		"larger than a part, cut":  large[:len(large)-512],
		"larger than a part, flip": flip(large, len(large)-600),
	} {
		_, err := Take(ctx, dest, Snapshot{Reader: bytes.NewReader(stream), Revision: 8, EtcdVersion: "3.7.3"}, "uid-1", now)
		if !snapshot.IsInvalid(err) || !strings.Contains(err.Error(), "truncated or corrupt") {
			t.Errorf("%s: Take = %v, want an InvalidError saying the stream is truncated or corrupt", name, err)
		}
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("member went away") }

func TestLocal(t *testing.T) {
	root := t.TempDir()
	dir, err := LocalDir(root, "default", "my-etcd")
	if err != nil {
		t.Fatal(err)
	}
	testDestination(t, NewLocal(dir))

	// Only complete backups and their sidecars remain: no temporary file survives.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
	if len(entries) != 4 {
		t.Errorf("directory holds %d files, want 2 backups and 2 sidecars", len(entries))
	}
}

// TestLocalRemovesInterruptedWrites: what a writer killed mid-backup leaves (a temporary
// snapshot, a temporary sidecar, a sidecar without its backup) is gone once the next backup
// is written; complete backups and files that are not the destination's stay.
func TestLocalRemovesInterruptedWrites(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := NewLocal(dir)
	kept := Key(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), 7)
	up, err := l.Write(ctx, kept, "uid", strings.NewReader("complete"))
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Commit(ctx, Info{Key: kept, Revision: 7, Size: 8, Time: time.Now(), InstanceUID: "uid"}); err != nil {
		t.Fatal(err)
	}
	orphan := Key(time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC), 8)
	leftovers := []string{"." + orphan + ".123.tmp", "." + orphan + metaSuffix + ".456.tmp", orphan + metaSuffix}
	for _, name := range append([]string{"notes.txt"}, leftovers...) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("half"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	next := Key(time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC), 9)
	up, err = l.Write(ctx, next, "uid", strings.NewReader("next"))
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Commit(ctx, Info{Key: next, Revision: 9, Size: 4, Time: time.Now(), InstanceUID: "uid"}); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	want := []string{next, next + metaSuffix, kept, kept + metaSuffix, "notes.txt"}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("directory holds %v, want %v", names, want)
	}
}

func TestLocalDirRefusesPaths(t *testing.T) {
	for _, bad := range [][2]string{{"", "x"}, {"default", ".."}, {"a/b", "x"}, {"default", `x\y`}} {
		if _, err := LocalDir("/backups", bad[0], bad[1]); err == nil {
			t.Errorf("LocalDir accepted namespace %q name %q", bad[0], bad[1])
		}
	}
}

// The credentials file is an AWS shared credentials file; its default profile counts.
func TestFileCredentials(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "credentials")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	creds := FileCredentials{Path: path}
	write("# keys\n[other]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n\n[default]\naws_access_key_id = AKID\r\naws_secret_access_key=s3cr=t\n")
	if id, secret, err := creds.S3Credentials(ctx, "ns", nil); err != nil || id != "AKID" || secret != "s3cr=t" {
		t.Fatalf("got %q %q %v, want the default profile's keys", id, secret, err)
	}
	// Rotating the file takes effect at the next use.
	write("aws_access_key_id = NEW\naws_secret_access_key = key\n[other]\naws_access_key_id = x\n")
	if id, secret, err := creds.S3Credentials(ctx, "ns", nil); err != nil || id != "NEW" || secret != "key" {
		t.Fatalf("after rotation got %q %q %v", id, secret, err)
	}
	for _, c := range []struct {
		name, content string
		ref           *v1beta1.SecretReference
		want          string
	}{
		{"only another profile", "[other]\naws_access_key_id = a\naws_secret_access_key = b\n", nil, "[default]"},
		{"no secret key", "[default]\naws_access_key_id = a\n", nil, "aws_secret_access_key"},
		{"a Secret named", "[default]\naws_access_key_id = a\naws_secret_access_key = b\n", &v1beta1.SecretReference{Name: "s3"}, "credentialsSecretRef"},
	} {
		write(c.content)
		if _, _, err := creds.S3Credentials(ctx, "ns", c.ref); !errors.Is(err, ErrCredentials) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrCredentials mentioning %s", c.name, err, c.want)
		}
	}
	missing := FileCredentials{Path: filepath.Join(t.TempDir(), "absent")}
	if _, _, err := missing.S3Credentials(ctx, "ns", nil); !errors.Is(err, ErrCredentials) || !strings.Contains(err.Error(), "absent") {
		t.Errorf("missing file: %v, want ErrCredentials naming it", err)
	}
}

// TestLocalListSkipsForeignFiles: a file named like a backup but without a sidecar (another
// tool's file in the directory) is not listed and does not make the listing fail; opening it
// says why it is not a backup. A sidecar that is not JSON is a damaged backup of ours: the
// listing reports it.
func TestLocalListSkipsForeignFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := NewLocal(dir)
	ours := Key(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), 7)
	up, err := l.Write(ctx, ours, "uid", strings.NewReader("complete"))
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Commit(ctx, Info{Key: ours, Revision: 7, Size: 8, Time: time.Now(), InstanceUID: "uid", SHA256: strings.Repeat("ab", 32)}); err != nil {
		t.Fatal(err)
	}
	noSidecar := Key(time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC), 8)
	if err := os.WriteFile(filepath.Join(dir, noSidecar), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	list, err := l.List(ctx)
	if err != nil {
		t.Fatalf("List with a foreign file: %v", err)
	}
	if len(list) != 1 || list[0].Key != ours {
		t.Errorf("List = %+v, want only %s", list, ours)
	}
	if _, _, err := l.Open(ctx, noSidecar); !errors.Is(err, ErrNoProvenance) {
		t.Errorf("Open(%s) = %v, want ErrNoProvenance", noSidecar, err)
	}

	badSidecar := Key(time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC), 9)
	for name, data := range map[string]string{badSidecar: "y", badSidecar + metaSuffix: "{not json"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.List(ctx); err == nil || errors.Is(err, ErrNoProvenance) || !strings.Contains(err.Error(), badSidecar) {
		t.Errorf("List with a damaged sidecar = %v, want an error naming %s", err, badSidecar)
	}
}

// TestNewestIsByRevisionNotByClock: a backup taken while the controller's clock was wrong (a
// year ahead, then corrected) has a key that sorts after every later one. The instance's
// newest backup is still the one with the most recent data, by revision (which only grows
// over an instance's life: a restore or a recovery raises it above the replaced cluster's):
// spec.restoreFrom restored the stale backup, and retention with keep 1 deleted every new
// backup right after it was taken.
func TestNewestIsByRevisionNotByClock(t *testing.T) {
	ctx := context.Background()
	dest := NewLocal(t.TempDir())
	now := time.Date(2026, 11, 29, 3, 0, 0, 0, time.UTC)
	take := func(at time.Time, revision int64) Info { return takeAt(t, dest, at, revision) }
	take(now, 100)
	stale := take(now.AddDate(1, 0, 0), 200) // the clock a year ahead
	latest := take(now.Add(time.Hour), 300)  // corrected

	if newest, err := Newest(ctx, dest, "uid-1"); err != nil || newest.Key != latest.Key {
		t.Fatalf("newest %s (revision %d), %v; want %s (revision 300)", newest.Key, newest.Revision, err, latest.Key)
	}
	deleted, err := Prune(ctx, dest, latest, 1)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(deleted, latest.Key) || !slices.Contains(deleted, stale.Key) {
		t.Fatalf("keep 1 deleted %v, want the backups older than %s (revision 300) only", deleted, latest.Key)
	}
	if left, err := dest.List(ctx); err != nil || len(left) != 1 || left[0].Key != latest.Key {
		t.Fatalf("left %+v, %v; want %s", left, err, latest.Key)
	}
}

// TestPruneNeverDeletesTheBackupJustTaken: an instance whose data was lost and started anew
// under the same UID takes backups at revisions below its earlier ones. Retention keeps the
// newest by revision, yet never the backup just taken: with keep 1, the new backups were
// deleted right after they were taken, and the instance's only recent data was in none.
func TestPruneNeverDeletesTheBackupJustTaken(t *testing.T) {
	ctx := context.Background()
	dest := NewLocal(t.TempDir())
	now := time.Date(2026, 11, 29, 3, 0, 0, 0, time.UTC)
	take := func(at time.Time, revision int64) Info { return takeAt(t, dest, at, revision) }
	before := take(now, 5000)
	first := take(now.Add(time.Hour), 10)
	if deleted, err := Prune(ctx, dest, first, 1); err != nil || len(deleted) != 0 {
		t.Fatalf("keep 1 after %s (revision 10) deleted %v, %v; want nothing: it was just taken, %s is the newest by revision", first.Key, deleted, err, before.Key)
	}
	second := take(now.Add(2*time.Hour), 20)
	deleted, err := Prune(ctx, dest, second, 1)
	if err != nil || !slices.Equal(deleted, []string{first.Key}) {
		t.Fatalf("keep 1 after %s deleted %v, %v; want %s only", second.Key, deleted, err, first.Key)
	}
	left, err := dest.List(ctx)
	if err != nil || len(left) != 2 {
		t.Fatalf("left %+v, %v; want %s and %s", left, err, before.Key, second.Key)
	}
}

// takeAt takes a backup of instance uid-1 at revision into dest, with the clock at at.
func takeAt(t *testing.T, dest Destination, at time.Time, revision int64) Info {
	t.Helper()
	snap := Snapshot{Reader: bytes.NewReader(payload(512, revision)), Revision: revision}
	info, err := Take(context.Background(), dest, snap, "uid-1", func() time.Time { return at })
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// TestTakeRecordsARealSnapshot: a real etcd snapshot goes through Take's check into a local
// directory and an S3 bucket unchanged, recorded with its own sha256 and size.
func TestTakeRecordsARealSnapshot(t *testing.T) {
	ctx := context.Background()
	raw, err := os.ReadFile(snapshottest.Make(t, t.TempDir(), "snap.db", map[string]string{"a": "1", "b": "2"}))
	if err != nil {
		t.Fatal(err)
	}
	store := s3server.Start(t)
	s3, err := NewS3(S3Config{Endpoint: store.Endpoint, Bucket: store.Bucket, Prefix: "ns/db",
		AccessKeyID: store.AccessKeyID, SecretAccessKey: store.SecretAccessKey})
	if err != nil {
		t.Fatal(err)
	}
	for _, dest := range []Destination{NewLocal(t.TempDir()), s3} {
		info, err := Take(ctx, dest, Snapshot{Reader: bytes.NewReader(raw), Revision: 3, EtcdVersion: "3.7.3"}, "uid-1", time.Now)
		if err != nil || info.SHA256 != sum(raw) || info.Size != int64(len(raw)) {
			t.Fatalf("%s: Take = %+v, %v; want sha256 %s and size %d", dest, info, err, sum(raw), len(raw))
		}
		r, stored, err := dest.Open(ctx, info.Key)
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(r)
		_ = r.Close()
		if err != nil || !bytes.Equal(data, raw) || stored.SHA256 != info.SHA256 || stored.Size != info.Size {
			t.Fatalf("%s: read back %d bytes (%v), provenance %+v; want the snapshot as taken", dest, len(data), err, stored)
		}
	}
}

// TestLocalCreatesItsDirectory: the first backup of an instance creates its directory and
// the missing ones above it (mode 0700, each synced into its parent by durable.MkdirAll); a
// file where the directory goes is an error, and nothing is written.
func TestLocalCreatesItsDirectory(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	dir, err := LocalDir(root, "default", "my-etcd")
	if err != nil {
		t.Fatal(err)
	}
	key := Key(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), 7)
	up, err := NewLocal(dir).Write(ctx, key, "uid", strings.NewReader("snapshot"))
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	for d := dir; d != root; d = filepath.Dir(d) {
		if info, err := os.Stat(d); err != nil || !info.IsDir() || info.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v (err=%v), want a directory of mode 0700", d, info.Mode(), err)
		}
	}

	blocked := filepath.Join(t.TempDir(), "backups")
	if err := os.WriteFile(blocked, []byte("in the way"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewLocal(filepath.Join(blocked, "default", "my-etcd")).Write(ctx, key, "uid", strings.NewReader("snapshot")); err == nil {
		t.Fatal("a backup was written below a file")
	}
	if got, _ := os.ReadFile(blocked); string(got) != "in the way" {
		t.Errorf("the file in the way holds %q", got)
	}
}
