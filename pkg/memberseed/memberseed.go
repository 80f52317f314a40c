// Package memberseed builds the data directory of one etcd member from a backup before etcd
// starts: the kubernetes backend runs it as an init container of a member pod (the etcdaas
// image's etcdaas-controller seed-member) when the instance is created from a backup
// (spec.restoreFrom) or restored from a snapshot (the restore subresource), and when a cluster
// that lost quorum is rebuilt from a surviving member (the recover subresource): then the
// snapshot is streamed from the survivor, or is the member's own database when it is the
// survivor; the local backend calls it in process for the survivor of a recovery. It copies
// the snapshot next to the data directory, checks it against the sha256
// the controller expects (when it knows one) and as a snapshot (integrity hash, database
// check, etcd version), and only then replaces the member's data with etcdutl's restore.
// Seeding the same request twice does nothing: the member may have started from it already.
package memberseed

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/etcdaas/etcdaas/pkg/backup"
	"github.com/etcdaas/etcdaas/pkg/durable"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
	"github.com/etcdaas/etcdaas/pkg/snapshot"
)

// RevisionMargin is added to the revision the restored data must pass, for writes the
// replaced cluster committed after that revision was read (on another member, or until the
// members stopped).
const RevisionMargin = 10_000

// markerName is the file, next to the data directory, recording the ID of the seed the data
// directory was last built from.
const markerName = "seeded"

// Source opens a backup by key; backup.Destination implements it.
type Source interface {
	// Open returns the snapshot stored under key and its provenance.
	Open(ctx context.Context, key string) (io.ReadCloser, backup.Info, error)
}

// ownDatabaseCopy is the copy of the member's own database a recovery from it restores, next
// to the data directory and named after the seed; it is kept until the seed is done, so that
// a crash while the old data directory is being removed still finds it.
func ownDatabaseCopy(volume, seedID string) string {
	return filepath.Join(volume, "recover-"+seedID+".db")
}

// Config says which snapshot seeds which member.
type Config struct {
	// ID identifies this seed; a data directory seeded with it is kept as it is.
	ID string
	// Source holds the snapshot under Key (a MemberSource: the member at that client URL).
	Source Source
	Key    string
	// FromOwnData rebuilds the member from its own database (DataDir's member/snap/db)
	// instead of a Source: the recovery of a cluster from this member.
	FromOwnData bool
	// SHA256 is the hex sha256 the snapshot file must have; empty for a snapshot streamed
	// from a member, which only its integrity hash covers.
	SHA256 string
	// EtcdVersion is the etcd minor the member runs, such as "3.6": a snapshot written by a
	// newer etcd is refused.
	EtcdVersion string
	// DataDir is the member's etcd data directory; its parent is on the member's volume.
	DataDir string
	// Member is the member to build; Cluster every member of the new cluster.
	Member  snapshot.Member
	Cluster []snapshot.Member
	// ClusterToken is the new cluster's initial cluster token.
	ClusterToken string
	// RevisionBump raises the restored revision above the replaced cluster's, as the
	// controller read it before the cluster stopped; Seed raises it further when the data
	// directory it replaces is at a higher revision.
	RevisionBump uint64
}

// Result says what Seed did.
type Result struct {
	// AlreadySeeded is true when the data directory was built from this seed before.
	AlreadySeeded bool
	// Info describes the snapshot restored.
	Info *snapshot.Info
	// Downloaded, Verified and Restored are how long each part took.
	Downloaded, Verified, Restored time.Duration
	// ReplacedRevision is the revision of the data directory replaced, read right before the
	// restore (0 when there was none), and RevisionBump the bump the restore applied.
	ReplacedRevision int64
	RevisionBump     uint64
	// ReplacedRevisionErr says why the revision of the data directory replaced could not
	// be read; the controller's bump was applied as it was.
	ReplacedRevisionErr error
}

// Seed builds cfg.DataDir from the snapshot, unless it was built from this seed already. The
// existing data directory is removed only once the snapshot has passed every check; a refused
// snapshot (an *snapshot.InvalidError) leaves it as it was.
func Seed(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	volume := filepath.Dir(filepath.Clean(cfg.DataDir))
	marker := filepath.Join(volume, markerName)
	if done, err := seededAlready(volume, marker, cfg.ID); err != nil {
		return nil, err
	} else if done {
		// A crash right after the marker was written leaves the data replaced aside.
		return &Result{AlreadySeeded: true}, removeReplaced(cfg.DataDir)
	}
	// Nothing else writes the volume while the seed runs: a spool file there is what an
	// earlier attempt left when it crashed (a download or a copy of the own database).
	if _, err := snapshot.RemoveStaleSpool(volume, time.Now()); err != nil {
		return nil, err
	}
	res := &Result{}
	start := time.Now()
	var path string
	var err error
	if cfg.FromOwnData {
		path, err = copyOwnDatabase(cfg, volume)
	} else {
		path, err = download(ctx, cfg, volume)
		defer func() { _ = os.Remove(path) }()
	}
	if err != nil {
		return nil, err
	}
	res.Downloaded = time.Since(start)
	start = time.Now()
	if res.Info, err = verify(ctx, cfg, path); err != nil {
		return nil, err
	}
	res.Verified = time.Since(start)
	start = time.Now()
	cfg.RevisionBump = bumpPastReplaced(ctx, cfg, res)
	res.RevisionBump = cfg.RevisionBump
	if err := replace(cfg, path); err != nil {
		return nil, err
	}
	if err := durable.WriteFile(marker, []byte(cfg.ID+"\n"), 0o644); err != nil {
		return nil, err
	}
	if err := removeReplaced(cfg.DataDir); err != nil {
		return nil, err
	}
	if cfg.FromOwnData {
		if err := os.Remove(path); err != nil {
			return nil, err
		}
	}
	res.Restored = time.Since(start)
	return res, nil
}

// validate says what a Config lacks to seed a member.
func (cfg Config) validate() error {
	if cfg.ID == "" || cfg.DataDir == "" || cfg.Member.Name == "" || len(cfg.Cluster) == 0 {
		return errors.New("seeding a member needs an ID, a data directory, the member and the cluster")
	}
	if !cfg.FromOwnData && (cfg.Source == nil || cfg.Key == "") {
		return errors.New("seeding a member needs a source and a key, or its own data")
	}
	return nil
}

// seededAlready reports whether the seed id built the data directory on volume already, as
// its marker file records; it then removes the copy of the own database a crash right
// after the marker was written may have left behind.
func seededAlready(volume, marker, id string) (bool, error) {
	done, err := os.ReadFile(marker)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if strings.TrimSpace(string(done)) != id {
		return false, nil
	}
	if err := os.Remove(ownDatabaseCopy(volume, id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	return true, nil
}

// bumpPastReplaced records in res the revision of the data directory the seed replaces, and
// returns the revision bump to apply: cfg's, raised so that the seeded revisions pass the
// replaced one by RevisionMargin.
func bumpPastReplaced(ctx context.Context, cfg Config, res *Result) uint64 {
	if cfg.FromOwnData {
		// The database replaced is the one restored: its revision was just read.
		res.ReplacedRevision = res.Info.Revision
	} else {
		res.ReplacedRevision, res.ReplacedRevisionErr = replacedRevision(ctx, cfg.DataDir)
	}
	if res.ReplacedRevision > 0 {
		return max(cfg.RevisionBump, uint64(max(res.ReplacedRevision-res.Info.Revision, 0))+RevisionMargin)
	}
	return cfg.RevisionBump
}

// copyOwnDatabase copies the member's own database next to its data directory and returns
// the copy. When the database is gone but this seed's copy is there, an earlier attempt
// crashed while removing the old data directory: the copy is what the member is rebuilt from.
func copyOwnDatabase(cfg Config, volume string) (string, error) {
	path := ownDatabaseCopy(volume, cfg.ID)
	db := filepath.Join(cfg.DataDir, "member", "snap", "db")
	src, err := os.Open(db)
	if errors.Is(err, os.ErrNotExist) {
		if _, serr := os.Stat(path); serr == nil {
			return path, nil
		}
		return "", fmt.Errorf("member %s has no database (%s) to be rebuilt from", cfg.Member.Name, db)
	}
	if err != nil {
		return "", err
	}
	defer func() { _ = src.Close() }()
	// Written to a file of its own, synced, then renamed: a crash never leaves half a copy
	// under the name the next attempt resumes from.
	tmp, _, err := snapshot.Receive(src, volume, 0)
	if err == nil {
		if err = os.Rename(tmp, path); err != nil {
			_ = os.Remove(tmp)
		}
	}
	if err != nil {
		return "", fmt.Errorf("copying the database of member %s: %w", cfg.Member.Name, err)
	}
	return path, durable.SyncDir(volume)
}

// download copies the snapshot into a file on the member's volume.
func download(ctx context.Context, cfg Config, volume string) (string, error) {
	body, _, err := cfg.Source.Open(ctx, cfg.Key)
	if err != nil {
		return "", fmt.Errorf("opening %s: %w", cfg.Key, err)
	}
	defer func() { _ = body.Close() }()
	path, _, err := snapshot.Receive(body, volume, 0)
	if err != nil {
		return "", fmt.Errorf("downloading %s: %w", cfg.Key, err)
	}
	return path, nil
}

// verify checks the file's sha256 against the expected one, then the snapshot itself. A
// member's own database has no integrity hash: only the database check applies.
func verify(ctx context.Context, cfg Config, path string) (*snapshot.Info, error) {
	if cfg.SHA256 != "" {
		sum, err := fileSHA256(path)
		if err != nil {
			return nil, err
		}
		if sum != cfg.SHA256 {
			return nil, &snapshot.InvalidError{Reason: fmt.Sprintf("snapshot %s has sha256 %s, but %s was expected: it changed after it was accepted", cfg.Key, sum, cfg.SHA256)}
		}
	}
	verifySnapshot, what := snapshot.Verify, "snapshot "+cfg.Key
	if cfg.FromOwnData {
		verifySnapshot, what = snapshot.VerifyDatabase, "the database of member "+cfg.Member.Name
	}
	info, err := verifySnapshot(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if cfg.EtcdVersion != "" {
		if err := snapshot.CheckVersion(info, cfg.EtcdVersion); err != nil {
			return nil, fmt.Errorf("snapshot %s: %w", cfg.Key, err)
		}
	}
	return info, nil
}

// replacedRevision reads the revision of the database in dataDir, right before the restore
// replaces it: the replaced cluster's data as this member last applied it. The controller
// read the cluster's revision before the members stopped, and writes may have committed
// since; the restored revision must pass those too. It returns 0 when there is no database.
func replacedRevision(ctx context.Context, dataDir string) (int64, error) {
	if _, err := os.Stat(replacedDir(dataDir)); err == nil {
		// An earlier attempt moved the data replaced aside (replace).
		dataDir = replacedDir(dataDir)
	}
	db := filepath.Join(dataDir, "member", "snap", "db")
	if _, err := os.Stat(db); errors.Is(err, os.ErrNotExist) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	st, err := snapshot.Status(ctx, db)
	if err != nil {
		return 0, fmt.Errorf("reading the revision of the data replaced: %w", err)
	}
	return st.Revision, nil
}

// replace restores the snapshot next to the data directory, then swaps it in: the old data
// directory is moved aside (replacedDir) rather than removed, and only deleted once the
// marker says the seed is done (removeReplaced). A crash at any point leaves either the old
// data, or the old data aside and the restored data (or none) in its place without the
// marker: the next start seeds again from the same snapshot, and still reads the revision of
// the data aside. Data aside never served since it was moved: the seed that moved it did not
// finish, so etcd did not start.
func replace(cfg Config, path string) error {
	next := cfg.DataDir + ".seed"
	if err := os.RemoveAll(next); err != nil {
		return err
	}
	if err := snapshot.Restore(snapshot.RestoreConfig{
		Snapshot: path, DataDir: next, Member: cfg.Member, Cluster: cfg.Cluster,
		ClusterToken: cfg.ClusterToken, RevisionBump: cfg.RevisionBump, FromDatabase: cfg.FromOwnData,
	}, nil); err != nil {
		return err
	}
	aside := replacedDir(cfg.DataDir)
	switch _, err := os.Stat(aside); {
	case err == nil:
		// An earlier attempt moved the old data aside: what is in its place was restored by
		// it and never served.
		if err := os.RemoveAll(cfg.DataDir); err != nil {
			return err
		}
	case !errors.Is(err, os.ErrNotExist):
		return err
	default:
		if err := rename(cfg.DataDir, aside); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if err := durable.SyncDir(filepath.Dir(cfg.DataDir)); err != nil {
		return err
	}
	if err := rename(next, cfg.DataDir); err != nil {
		return err
	}
	return durable.SyncDir(filepath.Dir(cfg.DataDir))
}

// replacedDir is where replace keeps the data directory it replaces until the seed is done.
func replacedDir(dataDir string) string { return filepath.Clean(dataDir) + ".replaced" }

// removeReplaced deletes the data directory a finished seed replaced.
func removeReplaced(dataDir string) error { return os.RemoveAll(replacedDir(dataDir)) }

// rename is os.Rename; tests stop a seed at a rename.
var rename = os.Rename

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer func() { _ = f.Close() }()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, make([]byte, 256*1024)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// MemberSource streams snapshots from running etcd members: the key is the member's client
// URL. A member serves a snapshot of its own database with or without quorum, so the
// survivor of a quorum loss can seed another member.
type MemberSource struct {
	// Access holds the client TLS configuration, if any; its endpoints are not used.
	Access *etcdcluster.Access
}

// Open implements Source: it starts streaming a snapshot from the member at clientURL.
func (m MemberSource) Open(ctx context.Context, clientURL string) (io.ReadCloser, backup.Info, error) {
	access := &etcdcluster.Access{Endpoints: []string{clientURL}}
	if m.Access != nil {
		access.TLS = m.Access.TLS
	}
	// A stream to a member that does not run would wait for it for as long as ctx allows:
	// asking for its status first fails in seconds, with the reason.
	if st := etcdcluster.Status(ctx, access, clientURL); st.MemberID == 0 {
		return nil, backup.Info{}, fmt.Errorf("the surviving member at %s does not answer: %w", clientURL, st.Err)
	}
	snap, err := etcdcluster.OpenSnapshot(ctx, access, clientURL)
	if err != nil {
		return nil, backup.Info{}, err
	}
	return snap, backup.Info{Key: clientURL, Revision: snap.Revision, EtcdVersion: snap.Version}, nil
}
