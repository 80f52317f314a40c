package local

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/server/v3/etcdserver/api/snap"
	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.etcd.io/etcd/server/v3/storage/wal/walpb"
	"go.uber.org/zap"

	"github.com/etcdaas/etcdaas/pkg/embedetcd"
)

// errDataLost and errDataCorrupt say why a member with data cannot start.
var (
	errDataLost    = errors.New("its data directory is lost")
	errDataCorrupt = errors.New("its data directory is corrupt")
)

// checkData verifies, before a member that has data starts from it, that its data directory
// dir is there and readable. It must be: etcd takes a missing directory for a new member,
// which would rejoin the cluster under the old ID without what that member promised, and it
// stops the whole process (this controller) on a database or write-ahead log it cannot read.
// The write-ahead log is verified from the newest snapshot it names, the database opened
// read-only.
func checkData(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%w: %s does not exist", errDataLost, dir)
	case err != nil:
		return fmt.Errorf("%w: %v", errDataCorrupt, err)
	case !fi.IsDir():
		return fmt.Errorf("%w: %s is not a directory", errDataLost, dir)
	}
	walDir, snapDir := filepath.Join(dir, "member", "wal"), filepath.Join(dir, "member", "snap")
	if !wal.Exist(walDir) {
		return fmt.Errorf("%w: %s has no write-ahead log", errDataLost, dir)
	}
	lg := zap.NewNop()
	walSnaps, err := wal.ValidSnapshotEntries(lg, walDir)
	if err != nil {
		return fmt.Errorf("%w: reading the write-ahead log: %v", errDataCorrupt, err)
	}
	from := &walpb.Snapshot{}
	snapshot, err := snap.New(lg, snapDir).LoadNewestAvailable(walSnaps)
	switch {
	case err == nil:
		from.Index, from.Term = snapshot.Metadata.Index, snapshot.Metadata.Term
	case !errors.Is(err, snap.ErrNoSnapshot):
		return fmt.Errorf("%w: reading the raft snapshot: %v", errDataCorrupt, err)
	}
	if _, err := wal.Verify(lg, walDir, from); err != nil {
		return fmt.Errorf("%w: verifying the write-ahead log: %v", errDataCorrupt, err)
	}
	// A database another open copy still locks is not corrupt: that copy (a stop not finished,
	// a start that failed in this process) holds it, and the read-only open would wait for it.
	if err := embedetcd.CheckDatabaseUnlocked(filepath.Base(dir), dir); err != nil {
		return err
	}
	db, err := bolt.Open(filepath.Join(snapDir, "db"), 0o400, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return fmt.Errorf("%w: opening the database: %v", errDataCorrupt, err)
	}
	return db.Close()
}
