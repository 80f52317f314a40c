package memberseed

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcdaas/etcdaas/pkg/backup"
	"github.com/etcdaas/etcdaas/pkg/snapshot"
	"github.com/etcdaas/etcdaas/pkg/snapshot/snapshottest"
)

// store puts the snapshot at path into a local backup destination in dir, as a backup, and
// returns the destination and its provenance.
func store(t *testing.T, dir, path string) (*backup.Local, backup.Info) {
	t.Helper()
	ctx := context.Background()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	dest := backup.NewLocal(dir)
	taken, err := backup.Take(ctx, dest, backup.Snapshot{Reader: f, Revision: 4, EtcdVersion: "3.7.0"}, "uid", time.Now)
	if err != nil {
		t.Fatal(err)
	}
	return dest, taken
}

// storeAsIs puts the file at path into a local backup destination in dir as it is, with its
// own sha256 and size as provenance: a backup damaged after it was taken (backup.Take refuses
// to write one that is not an intact snapshot), or a stream the seed reads from a member.
func storeAsIs(t *testing.T, dir, path string) (*backup.Local, backup.Info) {
	t.Helper()
	ctx := context.Background()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dest := backup.NewLocal(dir)
	sum := sha256.Sum256(data)
	info := backup.Info{Key: backup.Key(time.Now(), 4), InstanceUID: "uid", Revision: 4, EtcdVersion: "3.7.0",
		SHA256: hex.EncodeToString(sum[:]), Size: int64(len(data)), Time: time.Now().UTC().Truncate(time.Second)}
	up, err := dest.Write(ctx, info.Key, info.InstanceUID, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Commit(ctx, info); err != nil {
		t.Fatal(err)
	}
	return dest, info
}

// oldData is a data directory with a file that tells it from a restored one.
func oldData(t *testing.T, volume string) string {
	t.Helper()
	data := filepath.Join(volume, "data")
	if err := os.MkdirAll(filepath.Join(data, "member"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "old"), []byte("old data"), 0o600); err != nil {
		t.Fatal(err)
	}
	return data
}

func config(dest Source, key, sum, data string) Config {
	m := snapshot.Member{Name: "db-0", PeerURL: "http://db-0.db-peers.ns.svc.cluster.local:2380"}
	return Config{ID: "seed-1", Source: dest, Key: key, SHA256: sum, EtcdVersion: "3.7", DataDir: data,
		Member: m, Cluster: []snapshot.Member{m}, ClusterToken: "token", RevisionBump: 5000}
}

func TestSeedReplacesTheDataOnceAndOnlyOnce(t *testing.T) {
	dir := t.TempDir()
	kvs := map[string]string{"a": "1", "b": "2", "c": "3"}
	dest, info := store(t, filepath.Join(dir, "backups"), snapshottest.Make(t, dir, "snap.db", kvs))
	volume := filepath.Join(dir, "volume")
	data := oldData(t, volume)
	cfg := config(dest, info.Key, info.SHA256, data)

	res, err := Seed(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.AlreadySeeded || res.Info == nil || res.Info.TotalKeys < len(kvs) {
		t.Fatalf("result = %+v, want a restore of at least %d keys", res, len(kvs))
	}
	if _, err := os.Stat(filepath.Join(data, "old")); !os.IsNotExist(err) {
		t.Fatalf("the old data directory is still there: %v", err)
	}
	st, err := snapshot.Status(context.Background(), filepath.Join(data, "member", "snap", "db"))
	if err != nil {
		t.Fatal(err)
	}
	if st.TotalKey < len(kvs) || st.Revision < 5000 {
		t.Fatalf("restored database: %d keys at revision %d, want %d keys and a revision above the bump 5000", st.TotalKey, st.Revision, len(kvs))
	}
	leftovers, err := filepath.Glob(filepath.Join(volume, "snapshot-*"))
	if err != nil || len(leftovers) != 0 {
		t.Fatalf("the downloaded snapshot was left on the volume: %v %v", leftovers, err)
	}

	// The member started and wrote: seeding again with the same ID must not touch it.
	if err := os.WriteFile(filepath.Join(data, "since"), []byte("written after the seed"), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err = Seed(context.Background(), cfg)
	if err != nil || !res.AlreadySeeded {
		t.Fatalf("seeding again: %+v, %v; want AlreadySeeded", res, err)
	}
	if _, err := os.Stat(filepath.Join(data, "since")); err != nil {
		t.Fatalf("seeding again touched the data: %v", err)
	}
	// A new seed (another restore) replaces it.
	cfg.ID = "seed-2"
	if res, err := Seed(context.Background(), cfg); err != nil || res.AlreadySeeded {
		t.Fatalf("a new seed: %+v, %v", res, err)
	}
	if _, err := os.Stat(filepath.Join(data, "since")); !os.IsNotExist(err) {
		t.Fatalf("a new seed kept the data: %v", err)
	}
}

func TestSeedRefusesAndLeavesTheDataAlone(t *testing.T) {
	dir := t.TempDir()
	good := snapshottest.Make(t, dir, "snap.db", map[string]string{"a": "1"})
	corrupt := filepath.Join(dir, "corrupt.db")
	snapshottest.WithCorruptPage(t, good, corrupt)
	newer := filepath.Join(dir, "newer.db")
	snapshottest.WithStorageVersion(t, good, newer, "3.9.0")
	goodDest, goodInfo := store(t, filepath.Join(dir, "good"), good)
	corruptDest, corruptInfo := store(t, filepath.Join(dir, "corrupt"), corrupt)
	newerDest, newerInfo := store(t, filepath.Join(dir, "newer"), newer)

	for name, cfg := range map[string]func(data string) Config{
		"a sha256 other than expected": func(data string) Config {
			return config(goodDest, goodInfo.Key, corruptInfo.SHA256, data)
		},
		"a corrupt database": func(data string) Config {
			return config(corruptDest, corruptInfo.Key, corruptInfo.SHA256, data)
		},
		"a newer etcd's snapshot": func(data string) Config {
			return config(newerDest, newerInfo.Key, newerInfo.SHA256, data)
		},
	} {
		t.Run(name, func(t *testing.T) {
			volume := t.TempDir()
			data := oldData(t, volume)
			_, err := Seed(context.Background(), cfg(data))
			if !snapshot.IsInvalid(err) {
				t.Fatalf("Seed = %v, want an InvalidError", err)
			}
			if got, err := os.ReadFile(filepath.Join(data, "old")); err != nil || string(got) != "old data" {
				t.Fatalf("the old data was touched: %q %v", got, err)
			}
			if _, err := os.Stat(filepath.Join(volume, markerName)); !os.IsNotExist(err) {
				t.Fatalf("a refused seed left its marker: %v", err)
			}
		})
	}
	t.Run("a missing key", func(t *testing.T) {
		volume := t.TempDir()
		data := oldData(t, volume)
		_, err := Seed(context.Background(), config(goodDest, "20260101T000000.000Z-r1.db", goodInfo.SHA256, data))
		if err == nil {
			t.Fatal("Seed of a missing key succeeded")
		}
		if _, err := os.Stat(filepath.Join(data, "old")); err != nil {
			t.Fatalf("the old data was touched: %v", err)
		}
	})
}

// TestSeedRaisesTheBumpAboveTheDataItReplaces: the data directory replaced is at a revision
// far above what the controller's bump covers (writes after the controller read the
// cluster's revision): the restore lands above it, and says so.
func TestSeedRaisesTheBumpAboveTheDataItReplaces(t *testing.T) {
	ctx := context.Background()
	dest, info, data, oldRevision := replacedFarAbove(t)
	cfg := config(dest, info.Key, info.SHA256, data) // the controller's bump: 5000
	res, err := Seed(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.ReplacedRevision != oldRevision || res.ReplacedRevisionErr != nil || res.RevisionBump < uint64(oldRevision)+RevisionMargin-uint64(res.Info.Revision) {
		t.Fatalf("result %+v: want the replaced revision %d read and the bump raised above it", res, oldRevision)
	}
	st, err := snapshot.Status(ctx, filepath.Join(data, "member", "snap", "db"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Revision <= oldRevision+RevisionMargin-1 {
		t.Fatalf("restored at revision %d, want above the replaced data's %d by the margin", st.Revision, oldRevision)
	}

	// Without data to replace, the controller's bump stands.
	fresh := filepath.Join(t.TempDir(), "fresh", "data")
	if err := os.MkdirAll(filepath.Dir(fresh), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg = config(dest, info.Key, info.SHA256, fresh)
	if res, err := Seed(ctx, cfg); err != nil || res.ReplacedRevision != 0 || res.RevisionBump != 5000 {
		t.Fatalf("seeding an empty volume: %+v, %v", res, err)
	}
}

// A recovery rebuilds a member from its own database (no integrity hash, no source) as a new
// cluster with its keys, the revision raised; a crash after the old data directory was removed
// finds the copy it was made from.
func TestSeedFromOwnData(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	kvs := map[string]string{"a": "1", "b": "2"}
	snap := snapshottest.Make(t, dir, "snap.db", kvs)
	volume := filepath.Join(dir, "volume")
	data := filepath.Join(volume, "data")
	m := snapshot.Member{Name: "db-0", PeerURL: "http://db-0.db-peers.ns.svc.cluster.local:2380"}
	if err := snapshot.Restore(snapshot.RestoreConfig{Snapshot: snap, DataDir: data, Member: m, Cluster: []snapshot.Member{m}, ClusterToken: "old"}, nil); err != nil {
		t.Fatal(err)
	}
	before, err := snapshot.Status(ctx, filepath.Join(data, "member", "snap", "db"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{ID: "recover-1", FromOwnData: true, EtcdVersion: "3.7", DataDir: data, Member: m, Cluster: []snapshot.Member{m},
		ClusterToken: "new", RevisionBump: 10000}
	res, err := Seed(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Info == nil || res.Info.Revision != before.Revision {
		t.Fatalf("result %+v, want the database's revision %d", res.Info, before.Revision)
	}
	after, err := snapshot.Status(ctx, filepath.Join(data, "member", "snap", "db"))
	if err != nil {
		t.Fatal(err)
	}
	if after.TotalKey < len(kvs) || after.Revision < before.Revision+10000 {
		t.Fatalf("rebuilt database: %d keys at revision %d, want %d keys above revision %d", after.TotalKey, after.Revision, len(kvs), before.Revision+10000)
	}
	if _, err := os.Stat(ownDatabaseCopy(volume, cfg.ID)); !os.IsNotExist(err) {
		t.Fatalf("the copy of the database was left on the volume: %v", err)
	}

	checkResumesFromCopy(t, &cfg, volume, len(kvs))
	// A crash after the seed was marked done, before its copy was removed.
	if err := os.WriteFile(ownDatabaseCopy(volume, cfg.ID), []byte("left behind"), 0o600); err != nil {
		t.Fatal(err)
	}
	if res, err := Seed(ctx, cfg); err != nil || !res.AlreadySeeded {
		t.Fatalf("seeded again: %+v, %v", res, err)
	}
	if _, err := os.Stat(ownDatabaseCopy(volume, cfg.ID)); !os.IsNotExist(err) {
		t.Fatalf("the copy left by a crash after the marker is still there: %v", err)
	}
	// Neither a database nor a copy: nothing to rebuild from.
	if err := os.RemoveAll(data); err != nil {
		t.Fatal(err)
	}
	cfg.ID = "recover-3"
	if _, err := Seed(ctx, cfg); err == nil || !strings.Contains(err.Error(), "has no database") {
		t.Fatalf("no database: %v", err)
	}
}

// checkResumesFromCopy checks that a seed from own data (cfg, on volume) resumes from the copy
// of the database after a crash while the old data directory was being removed (its database
// gone, the directory still there), then after one once it was removed, rebuilding at least
// keys keys. It leaves cfg.ID the last seed's.
func checkResumesFromCopy(t *testing.T, cfg *Config, volume string, keys int) {
	t.Helper()
	ctx := context.Background()
	data := cfg.DataDir
	for _, removed := range []string{filepath.Join(data, "member", "snap", "db"), data} {
		cfg.ID = "recover-" + filepath.Base(removed)
		if err := os.Rename(filepath.Join(data, "member", "snap", "db"), ownDatabaseCopy(volume, cfg.ID)); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(removed); err != nil {
			t.Fatal(err)
		}
		// What the crashed attempt's copy in progress left.
		spool := filepath.Join(volume, "snapshot-crashed.part")
		if err := os.WriteFile(spool, []byte("half a copy"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Seed(ctx, *cfg); err != nil {
			t.Fatalf("resuming from the copy (%s removed): %v", removed, err)
		}
		if _, err := os.Stat(spool); !os.IsNotExist(err) {
			t.Fatalf("the crashed attempt's spool file is still on the volume: %v", err)
		}
		if st, err := snapshot.Status(ctx, filepath.Join(data, "member", "snap", "db")); err != nil || st.TotalKey < keys {
			t.Fatalf("resumed (%s removed): %+v, %v", removed, st, err)
		}
	}
}

// A snapshot streamed from a member comes with no expected sha256: its integrity hash is
// checked, and a truncated stream is refused.
func TestSeedWithoutAnExpectedSHA256(t *testing.T) {
	dir := t.TempDir()
	snap := snapshottest.Make(t, dir, "snap.db", map[string]string{"a": "1"})
	dest, info := store(t, filepath.Join(dir, "backups"), snap)
	data := oldData(t, filepath.Join(dir, "volume"))
	if _, err := Seed(context.Background(), config(dest, info.Key, "", data)); err != nil {
		t.Fatal(err)
	}
	whole, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(dir, "cut.db")
	if err := os.WriteFile(cut, whole[:len(whole)-512], 0o600); err != nil {
		t.Fatal(err)
	}
	cutDest, cutInfo := storeAsIs(t, filepath.Join(dir, "cut"), cut)
	other := oldData(t, filepath.Join(dir, "volume2"))
	if _, err := Seed(context.Background(), config(cutDest, cutInfo.Key, "", other)); !snapshot.IsInvalid(err) {
		t.Fatalf("a truncated snapshot: %v", err)
	}
}

// A seed stopped after the old data directory was taken away and before the restored one took
// its place (the pod killed there) still raises the revision above the replaced data's when it
// runs again: the replaced data's revision is not lost with the crash. Nothing of the old data
// is left on the volume once the seed is done.
func TestSeedInterruptedWhileSwappingKeepsTheRevisionAbove(t *testing.T) {
	ctx := context.Background()
	dest, info, data, oldRevision := replacedFarAbove(t)
	// The restored data directory never takes its place: the pod is killed there.
	rename = func(from, to string) error {
		if to == data {
			return errors.New("killed")
		}
		return os.Rename(from, to)
	}
	t.Cleanup(func() { rename = os.Rename })
	cfg := config(dest, info.Key, info.SHA256, data)
	if _, err := Seed(ctx, cfg); err == nil {
		t.Fatal("the interrupted seed succeeded")
	}
	rename = os.Rename
	res, err := Seed(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := snapshot.Status(ctx, filepath.Join(data, "member", "snap", "db"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Revision <= oldRevision+RevisionMargin-1 || res.ReplacedRevision != oldRevision {
		t.Fatalf("restored at revision %d (replaced revision read: %d), want above the replaced data's %d by the margin",
			st.Revision, res.ReplacedRevision, oldRevision)
	}
	entries, err := os.ReadDir(filepath.Dir(data))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "data,seeded" {
		t.Fatalf("volume holds %v after the seed, want only the data directory and the marker", names)
	}
}

// replacedFarAbove stores a snapshot in a local destination and puts, where a seed restores it,
// the data of the cluster it replaces at a revision above 1,000,000, far above the controller's
// bump of 5000. It returns the destination, the snapshot's backup, the data directory and the
// revision of the replaced data.
func replacedFarAbove(t *testing.T) (*backup.Local, backup.Info, string, int64) {
	t.Helper()
	dir := t.TempDir()
	snap := snapshottest.Make(t, dir, "snap.db", map[string]string{"a": "1"})
	dest, info := store(t, filepath.Join(dir, "backups"), snap)
	data := filepath.Join(dir, "volume", "data")
	m := snapshot.Member{Name: "db-0", PeerURL: "http://db-0.db-peers.ns.svc.cluster.local:2380"}
	if err := snapshot.Restore(snapshot.RestoreConfig{Snapshot: snap, DataDir: data, Member: m, Cluster: []snapshot.Member{m},
		ClusterToken: "old", RevisionBump: 1_000_000}, nil); err != nil {
		t.Fatal(err)
	}
	old, err := snapshot.Status(context.Background(), filepath.Join(data, "member", "snap", "db"))
	if err != nil {
		t.Fatal(err)
	}
	return dest, info, data, old.Revision
}
