// Package snapshottest makes real etcd snapshots for tests, and the damaged or altered
// variants that a restore must refuse.
package snapshottest

import (
	"context"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcdaas/etcdaas/pkg/etcdtest"
)

// Make starts a one-member etcd (stopped when the test ends), writes kvs, and saves its
// snapshot (database and sha256, as the snapshot API streams it) to dir/name. It returns the
// snapshot's path.
func Make(t testing.TB, dir, name string, kvs map[string]string) string {
	t.Helper()
	endpoint := etcdtest.Start(t, nil)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cli.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for k, v := range kvs {
		if _, err := cli.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rc.Close() }()
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, rc); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// WithStorageVersion copies the snapshot src to dst with its recorded storage version set to
// version (such as "3.99.0") and a correct integrity hash, as a newer etcd would write it.
func WithStorageVersion(t testing.TB, src, dst, version string) {
	t.Helper()
	rewrite(t, src, dst, func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("storageVersion"), []byte(version))
	})
}

// WithCorruptPage copies the snapshot src to dst with every database page after the two meta
// pages overwritten by garbage and the integrity hash recomputed, so that only the database
// check can tell.
func WithCorruptPage(t testing.TB, src, dst string) {
	t.Helper()
	db := stripHash(t, src)
	pageSize := int64(os.Getpagesize())
	f, err := os.OpenFile(db, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	// Pages 0 and 1 are the meta pages; everything after them (freelist, buckets, keys)
	// becomes garbage.
	garbage := make([]byte, st.Size()-2*pageSize)
	for i := range garbage {
		garbage[i] = 0xA5
	}
	if _, err := f.WriteAt(garbage, 2*pageSize); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	appendHash(t, db, dst)
}

func rewrite(t testing.TB, src, dst string, change func(*bbolt.Tx) error) {
	db := stripHash(t, src)
	b, err := bbolt.Open(db, 0o600, &bbolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Update(change); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	appendHash(t, db, dst)
}

// stripHash copies the database part of a snapshot to a temporary file.
func stripHash(t testing.TB, src string) string {
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(t.TempDir(), "db")
	if err := os.WriteFile(db, data[:len(data)-sha256.Size], 0o600); err != nil {
		t.Fatal(err)
	}
	return db
}

// appendHash writes db followed by its sha256 to dst, padding db to a multiple of 512 bytes
// first as etcd's snapshot does.
func appendHash(t testing.TB, db, dst string) {
	data, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, WithHash(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// WithHash returns data padded with zeros to whole 512-byte blocks (one at least) followed
// by their sha256, as etcd's snapshot API streams a database: the shape of a snapshot and its
// integrity hash, for code that checks those but never reads the database (streaming a
// backup, listing, retention).
func WithHash(data []byte) []byte {
	out := append([]byte(nil), data...)
	if pad := len(out) % 512; pad != 0 || len(out) == 0 {
		out = append(out, make([]byte, 512-pad)...)
	}
	sum := sha256.Sum256(out)
	return append(out, sum[:]...)
}
