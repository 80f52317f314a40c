// Package snapshot receives, verifies and restores etcd snapshot files, the bytes the etcd
// Snapshot API streams (a bbolt database followed by its sha256). Receiving spools a stream to
// disk within a size limit without holding it in memory; verifying checks the trailing hash
// and the database's integrity with etcdutl's snapshot status and reads the storage version;
// restoring builds one member's data directory of a new cluster with etcdutl's restore.
package snapshot

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/coreos/go-semver/semver"
	etcdutlsnapshot "go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
)

// hashSize is the size of the sha256 digest etcd appends to the database in a snapshot.
const hashSize = sha256.Size

// copyBuffer is the size of the one buffer a snapshot goes through when spooled or hashed.
const copyBuffer = 256 * 1024

// TooLargeError is returned by Receive when the stream exceeds the limit.
type TooLargeError struct {
	// Limit is the largest snapshot accepted, in bytes.
	Limit int64
}

// Error implements error.
func (e *TooLargeError) Error() string {
	return fmt.Sprintf("the snapshot is larger than the %d bytes this server accepts", e.Limit)
}

// ReadError is a failure to read the stream Receive copies: the client's side of a request
// (a body cut off or timed out), as opposed to the server failing to write its spool file.
type ReadError struct {
	// Err is the reader's error.
	Err error
}

// Error implements error.
func (e *ReadError) Error() string { return "reading the snapshot: " + e.Err.Error() }

// Unwrap returns the reader's error.
func (e *ReadError) Unwrap() error { return e.Err }

// sourceReader marks the errors of the stream being received as *ReadError.
type sourceReader struct{ r io.Reader }

func (s sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		err = &ReadError{Err: err}
	}
	return n, err
}

// InvalidError means the file is not a usable snapshot: corrupt, truncated, without or with a
// wrong integrity hash, or from an etcd newer than the one that would run it.
type InvalidError struct {
	// Reason explains what is wrong, for the user.
	Reason string
}

// Error implements error.
func (e *InvalidError) Error() string { return e.Reason }

func invalid(format string, args ...any) error {
	return &InvalidError{Reason: fmt.Sprintf(format, args...)}
}

// IsInvalid reports whether err is or wraps an InvalidError.
func IsInvalid(err error) bool {
	var ie *InvalidError
	return errors.As(err, &ie)
}

// spoolPattern names the files Receive writes.
const spoolPattern = "snapshot-*.part"

// StaleSpoolAge is how long a restore's spool file must have gone unwritten before it counts as
// left by a receipt a crash cut short: a receipt in progress writes it as the body arrives.
const StaleSpoolAge = time.Hour

// RemoveStaleSpool deletes the files Receive left in dir that were last written before
// before: a receiving process killed mid-upload never removes its file. A receipt in progress
// writes its file as the body arrives, so an old modification time means a dead one. It
// returns the deleted paths.
func RemoveStaleSpool(dir string, before time.Time) ([]string, error) {
	matches, err := filepath.Glob(filepath.Join(dir, spoolPattern))
	if err != nil {
		return nil, err
	}
	return RemoveStaleFiles(matches, before)
}

// RemoveStaleFiles deletes the regular files among paths last written before before, and
// returns the deleted paths; a path gone already is no error.
func RemoveStaleFiles(paths []string, before time.Time) ([]string, error) {
	var deleted []string
	var errs []error
	for _, path := range paths {
		st, err := os.Lstat(path)
		if err != nil || !st.Mode().IsRegular() || !st.ModTime().Before(before) {
			continue
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		deleted = append(deleted, path)
	}
	return deleted, errors.Join(errs...)
}

// Receive copies r into a new file in dir, refusing (with a *TooLargeError) more than limit
// bytes when limit > 0. It returns the file's path and size; on any error the file is removed.
// A failure to read r is a *ReadError; any other error is the server's (the spool file).
func Receive(r io.Reader, dir string, limit int64) (string, int64, error) {
	f, err := os.CreateTemp(dir, spoolPattern)
	if err != nil {
		return "", 0, fmt.Errorf("creating the spool file: %w", err)
	}
	fail := func(err error) (string, int64, error) {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return "", 0, err
	}
	var src io.Reader = sourceReader{r: r}
	if limit > 0 {
		// One byte more than the limit tells a stream at the limit from one above it.
		src = io.LimitReader(src, limit+1)
	}
	n, err := io.CopyBuffer(f, src, make([]byte, copyBuffer))
	if err != nil {
		return fail(fmt.Errorf("receiving the snapshot after %d bytes: %w", n, err))
	}
	if limit > 0 && n > limit {
		return fail(&TooLargeError{Limit: limit})
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(f.Name())
		return "", 0, err
	}
	return f.Name(), n, nil
}

// Info describes a verified snapshot.
type Info struct {
	// Size is the file's size in bytes, hash included.
	Size int64 `json:"size"`
	// SHA256 is the hex sha256 of the whole file, as backups record it.
	SHA256 string `json:"sha256"`
	// Revision is the highest store revision in the snapshot.
	Revision int64 `json:"revision"`
	// TotalKeys is the number of live keys.
	TotalKeys int `json:"totalKeys"`
	// StorageVersion is the etcd storage version that wrote it, such as "3.6.0"; empty for
	// snapshots of etcd older than 3.6, which do not record it.
	StorageVersion string `json:"storageVersion,omitempty"`
}

// Verify checks that path is a complete, intact etcd snapshot: the sha256 etcd appends must
// match the database, and etcdutl's snapshot status must find the database consistent. A
// file that fails either is an *InvalidError. The database check runs in a child process
// (see Status): bbolt panics on some corrupt pages in goroutines no caller can recover.
func Verify(ctx context.Context, path string) (*Info, error) {
	info := &Info{}
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	info.Size = st.Size()
	if !validSize(info.Size) {
		return nil, invalid("the file is not an etcd snapshot with an integrity hash (%d bytes: a snapshot from the etcd snapshot API, etcdctl snapshot save or the backup subresource is a multiple of 512 bytes plus a 32-byte sha256)", info.Size)
	}
	sum, err := checkTrailingHash(path)
	if err != nil {
		return nil, err
	}
	if info, err = databaseInfo(ctx, path, info.Size); err != nil {
		return nil, err
	}
	info.SHA256 = sum
	return info, nil
}

// VerifyDatabase checks that path is a consistent etcd database, such as a member's own
// member/snap/db, which has no integrity hash; a file that fails is an *InvalidError.
func VerifyDatabase(ctx context.Context, path string) (*Info, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	return databaseInfo(ctx, path, st.Size())
}

// databaseInfo is what etcdutl's snapshot status reads from the database at path, of size
// bytes.
func databaseInfo(ctx context.Context, path string, size int64) (*Info, error) {
	status, err := Status(ctx, path)
	if err != nil {
		return nil, err
	}
	return &Info{Size: size, Revision: status.Revision, TotalKeys: status.TotalKey, StorageVersion: status.Version}, nil
}

// checkTrailingHash compares the sha256 of the database part of the file with the digest that
// follows it (through a Verifier, as a backup checks its stream), and returns the hex sha256 of
// the whole file.
func checkTrailingHash(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer func() { _ = f.Close() }()
	v := NewVerifier(f)
	if _, err := io.CopyBuffer(io.Discard, v, make([]byte, copyBuffer)); err != nil {
		return "", err
	}
	return v.SHA256(), nil
}

// CheckVersion refuses a snapshot written by an etcd minor newer than runs, such as "3.7": an
// older etcd cannot read a newer storage format safely. Snapshots without a recorded version
// (etcd before 3.6) are older than any version this project runs.
func CheckVersion(info *Info, runs string) error {
	if info.StorageVersion == "" {
		return nil
	}
	snap, err := semver.NewVersion(info.StorageVersion)
	if err != nil {
		return invalid("the snapshot records an unreadable etcd version %q", info.StorageVersion)
	}
	target, err := parseMinor(runs)
	if err != nil {
		return err
	}
	if snap.Major > target.Major || (snap.Major == target.Major && snap.Minor > target.Minor) {
		return invalid("the snapshot was written by etcd %d.%d, newer than the etcd %d.%d the instance runs: restore it into an instance running %d.%d or later",
			snap.Major, snap.Minor, target.Major, target.Minor, snap.Major, snap.Minor)
	}
	return nil
}

// parseMinor parses "3.7", "v3.7" or "3.7.3".
func parseMinor(v string) (*semver.Version, error) {
	v = strings.TrimPrefix(v, "v")
	if strings.Count(v, ".") == 1 {
		v += ".0"
	}
	parsed, err := semver.NewVersion(v)
	if err != nil {
		return nil, fmt.Errorf("unreadable etcd version %q: %w", v, err)
	}
	return parsed, nil
}

// Member is one member of the cluster a snapshot is restored into.
type Member struct {
	// Name is the member's name.
	Name string
	// PeerURL is the peer URL it advertises.
	PeerURL string
}

// RestoreConfig says how to restore one member's data directory.
type RestoreConfig struct {
	// Snapshot is the verified snapshot file.
	Snapshot string
	// DataDir is the member's data directory. It must not exist: Restore builds it next to
	// its final place and renames it there, so that a crash never leaves half a directory.
	DataDir string
	// Member is the member being restored; Cluster is every member of the new cluster
	// (Member among them).
	Member  Member
	Cluster []Member
	// ClusterToken is the new cluster's initial cluster token.
	ClusterToken string
	// RevisionBump raises the store revision by this much and marks the old revisions
	// compacted, so that watchers of the previous cluster never see a revision go back.
	RevisionBump uint64
	// FromDatabase says Snapshot is a member's database file (its data directory's
	// member/snap/db), which has no integrity hash to check.
	FromDatabase bool
}

// InitialCluster formats members as etcd's --initial-cluster.
func InitialCluster(members []Member) string {
	parts := make([]string, len(members))
	for i, m := range members {
		parts[i] = m.Name + "=" + m.PeerURL
	}
	return strings.Join(parts, ",")
}

// Restore builds cfg.DataDir from the snapshot with etcdutl's restore (which checks the
// snapshot's hash once more). Leftovers of an interrupted earlier attempt are removed first.
func Restore(cfg RestoreConfig, lg *zap.Logger) error {
	if lg == nil {
		lg = zap.NewNop()
	}
	if _, err := os.Stat(cfg.DataDir); err == nil {
		return fmt.Errorf("restoring into %s: the data directory exists", cfg.DataDir)
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	tmp := cfg.DataDir + ".restoring"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	rc := etcdutlsnapshot.RestoreConfig{
		SnapshotPath:        cfg.Snapshot,
		Name:                cfg.Member.Name,
		OutputDataDir:       tmp,
		PeerURLs:            []string{cfg.Member.PeerURL},
		InitialCluster:      InitialCluster(cfg.Cluster),
		InitialClusterToken: cfg.ClusterToken,
		SkipHashCheck:       cfg.FromDatabase,
	}
	if cfg.RevisionBump > 0 {
		rc.RevisionBump, rc.MarkCompacted = cfg.RevisionBump, true
	}
	if err := etcdutlsnapshot.NewV3(lg).Restore(rc); err != nil {
		_ = os.RemoveAll(tmp)
		return fmt.Errorf("restoring member %s: %w", cfg.Member.Name, err)
	}
	if err := os.Chmod(tmp, 0o700); err != nil {
		return err
	}
	if err := os.Rename(tmp, cfg.DataDir); err != nil {
		return err
	}
	return syncDir(filepath.Dir(cfg.DataDir))
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer func() { _ = d.Close() }()
	return d.Sync()
}

// Staged is a verified snapshot handed to the backend that runs an instance, to restore every
// member of the instance from.
type Staged struct {
	// ID identifies this restore; every member restored for it records it.
	ID string `json:"id"`
	// InstanceUID is the UID of the instance the restore is for: a newer instance with the
	// same name never picks it up.
	InstanceUID string `json:"instanceUID"`
	// Info is what verifying the snapshot found.
	Info Info `json:"info"`
	// RequestedAt is when the snapshot was accepted.
	RequestedAt time.Time `json:"requestedAt"`
}

// ErrCannotStage wraps why a verified snapshot cannot be handed to an instance's members for
// a reason the user can change, such as a missing backup destination or unreadable
// credentials.
var ErrCannotStage = errors.New("the snapshot cannot be handed to the instance's members")

// ErrRestorePending is returned when an instance already has a restore that has not finished.
var ErrRestorePending = errors.New("a restore of the instance is already under way")

// ErrRecoveryUnderWay is returned when a recovery of the instance from quorum loss is
// requested or recorded and has not finished: a restore would take it over halfway, with
// volumes of the old cluster still to be discarded.
var ErrRecoveryUnderWay = errors.New("a recovery of the instance from quorum loss is under way")

// RecoveryError is ErrRecoveryUnderWay naming where the recovery rebuilds the cluster from
// (a member, or "the most advanced surviving member"), for the 409 of a restore refused
// because of it.
func RecoveryError(from string) error {
	return fmt.Errorf("%w (from %s); nothing was restored: restore once the instance is Running again", ErrRecoveryUnderWay, from)
}

// PendingError is ErrRestorePending naming the restore that has not finished, for the 409 of
// a restore refused because of it.
func PendingError(pending *Staged) error {
	return fmt.Errorf("%w: restore %s, accepted at %s, has not finished", ErrRestorePending,
		pending.ID, pending.RequestedAt.UTC().Format(time.RFC3339))
}
