package local

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.uber.org/zap"
)

// TestCheckDataReportsALockedDatabaseAtOnce holds a member's database open, as a stop not
// finished or a start that failed in this process does: the check before a restart says so
// at once, instead of waiting for the lock and then calling the data corrupt.
func TestCheckDataReportsALockedDatabaseAtOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m-0")
	w, err := wal.Create(zap.NewNop(), filepath.Join(dir, "member", "wal"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	snapDir := filepath.Join(dir, "member", "snap")
	if err := os.MkdirAll(snapDir, 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(filepath.Join(snapDir, "db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Waiting for the lock would end, after bolt's 5 s timeout, in an error calling the data
	// corrupt: the error itself says whether the check waited, on a busy machine too.
	err = checkData(dir)
	if err == nil || errors.Is(err, errDataCorrupt) || !strings.Contains(err.Error(), "member m-0 cannot start: its database") || !strings.Contains(err.Error(), "still open elsewhere") {
		t.Fatalf("checkData of a member whose database is held open: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := checkData(dir); err != nil {
		t.Fatalf("checkData once the database is closed: %v", err)
	}
}
