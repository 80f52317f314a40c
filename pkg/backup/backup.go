// Package backup writes etcd snapshots of an instance to a destination (an S3-compatible
// bucket or the server's backup directory), records their provenance next to them, lists
// them and applies retention. A backup is streamed from the member straight into the
// destination, never held in memory, and becomes visible under its key only once it is
// complete, so that a reader never sees half a snapshot.
package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/etcdaas/etcdaas/pkg/backup/backupkey"
	"github.com/etcdaas/etcdaas/pkg/snapshot"
)

// Info describes one backup: where it is and its provenance.
type Info struct {
	// Key is the backup's name in its destination, relative to the destination's root for
	// the instance; keys of one instance sort by time.
	Key string
	// InstanceUID is the UID of the instance the snapshot was taken of.
	InstanceUID string
	// Revision is the etcd revision the snapshot was taken at.
	Revision int64
	// EtcdVersion is the etcd storage version recorded in the snapshot, such as "3.7.0".
	EtcdVersion string
	// SHA256 is the hex SHA-256 of the snapshot bytes.
	SHA256 string
	// Size is the size of the snapshot in bytes.
	Size int64
	// Time is when the backup was complete.
	Time time.Time
}

// Destination is where the backups of one instance live.
type Destination interface {
	// Write streams body, a backup of the instance instanceUID, to a place that is not yet
	// visible under key. The caller then either commits the upload with the backup's
	// provenance or aborts it.
	Write(ctx context.Context, key, instanceUID string, body io.Reader) (Upload, error)
	// List returns the complete backups, newest first.
	List(ctx context.Context) ([]Info, error)
	// Open returns the snapshot stored under key and its provenance.
	Open(ctx context.Context, key string) (io.ReadCloser, Info, error)
	// Delete removes the backup stored under key.
	Delete(ctx context.Context, key string) error
	// String names the destination for messages, without credentials.
	String() string
}

// Upload is a written but not yet visible backup.
type Upload interface {
	// Commit records info as the backup's provenance and makes it visible under its key.
	Commit(ctx context.Context, info Info) error
	// Abort removes what was written.
	Abort(ctx context.Context) error
}

// OrphanAge is how old what an interrupted upload left must be before Take deletes it. One
// backup of an instance is taken at a time (one controller holds the lease; it runs one per
// instance), so nothing of the instance's own is being written when Take starts: the age only
// spares the upload of a previous leader still finishing after losing its lease.
const OrphanAge = time.Hour

// sweeper is a destination that deletes what the interrupted uploads of an instance left
// behind (started before the given time) and returns what it deleted.
type sweeper interface {
	sweep(ctx context.Context, instanceUID string, before time.Time) ([]string, error)
}

// ErrNotFound is returned by Open for a key the destination does not hold.
var ErrNotFound = errors.New("no such backup")

// ErrNoProvenance is the error for an object named like a backup that carries no provenance
// at all (an S3 object without the etcdaas metadata, a file without its sidecar): something
// else's file in a shared bucket or directory, never listed, counted by retention or restored
// from. Provenance that is there but wrong (a size that does not match, an unreadable
// sidecar) is an error of its own: a damaged backup of ours is reported, not hidden.
var ErrNoProvenance = errors.New("no valid backup provenance")

// skipForeign reports whether a listing passes over the entry err was returned for (an object
// that is not one of our backups), logging it so that an operator can find it.
func skipForeign(err error) bool {
	if !errors.Is(err, ErrNoProvenance) {
		return false
	}
	klog.InfoS("Not listing an object that is not a backup", "err", err)
	return true
}

// skipDeleted reports whether a listing passes over the entry err was returned for: a backup
// deleted between the listing and the read of its provenance (retention, of this controller
// or of a previous leader still finishing, deletes backups while others list them).
func skipDeleted(err error) bool { return errors.Is(err, ErrNotFound) }

// Key returns the key of a backup taken at t of the given revision, such as
// "20261129T030512.123Z-r4711.db" (backupkey.New).
func Key(t time.Time, revision int64) string { return backupkey.New(t, revision) }

// IsKey reports whether name is a key Key returns (backupkey.Valid).
func IsKey(name string) bool { return backupkey.Valid(name) }

// Snapshot is an open snapshot stream and what is known about it before it is read.
type Snapshot struct {
	io.Reader
	// Revision is the revision the snapshot was taken at.
	Revision int64
	// EtcdVersion is the etcd storage version the snapshot records, such as "3.7.0".
	EtcdVersion string
}

// Take streams snap into dest under a new key (one no other backup this process is taking
// holds: see reserveKey) and commits it with its provenance. The stream
// is checked as it is written (snapshot.Verifier): a stream shorter than a snapshot can be, or
// whose trailing sha256 does not match its database, fails the write before its last 32 bytes
// reach dest, and the error (an *snapshot.InvalidError) says it is truncated or corrupt. On
// any error nothing becomes visible and what was written is removed.
func Take(ctx context.Context, dest Destination, snap Snapshot, instanceUID string, now func() time.Time) (Info, error) {
	key, release := reserveKey(now(), snap.Revision)
	defer release()
	if sw, ok := dest.(sweeper); ok {
		// What the instance's earlier uploads left when the process writing them died. A
		// failure to delete it is no reason to skip this backup.
		swept, err := sw.sweep(ctx, instanceUID, now().Add(-OrphanAge))
		if err != nil {
			klog.InfoS("Could not delete interrupted backup uploads", "destination", dest.String(), "instanceUID", instanceUID, "deleted", swept, "err", err)
		} else if len(swept) > 0 {
			klog.InfoS("Deleted interrupted backup uploads", "destination", dest.String(), "instanceUID", instanceUID, "deleted", swept)
		}
	}
	body := snapshot.NewVerifier(snap.Reader)
	upload, err := dest.Write(ctx, key, instanceUID, body)
	if verr := body.Err(); snapshot.IsInvalid(verr) {
		switch {
		case err == nil:
			err = abort(ctx, upload) // a destination that did not fail on the stream's error
		case errors.Is(err, verr):
			err = nil // the destination returned the reader's error: said once is enough
		}
		return Info{}, errors.Join(fmt.Errorf("backup %s not written to %s: %w", key, dest, verr), err)
	}
	if err != nil {
		return Info{}, fmt.Errorf("writing %s to %s: %w", key, dest, err)
	}
	if verr := body.Err(); verr != nil {
		return Info{}, errors.Join(fmt.Errorf("writing %s to %s: %w", key, dest, verr), abort(ctx, upload))
	}
	info := Info{
		Key:         key,
		InstanceUID: instanceUID,
		Revision:    snap.Revision,
		EtcdVersion: snap.EtcdVersion,
		SHA256:      body.SHA256(),
		Size:        body.Size(),
		Time:        now().UTC().Truncate(time.Second),
	}
	if err := upload.Commit(ctx, info); err != nil {
		return Info{}, errors.Join(fmt.Errorf("completing %s in %s: %w", key, dest, err), abort(ctx, upload))
	}
	return info, nil
}

// takingKeys holds the keys of the backups this process is taking: instances may share an S3
// bucket and prefix, and two of them backed up in the same millisecond at the same revision
// (instances created together, with the same schedule) would otherwise commit under one key,
// the second replacing the first instance's backup.
var takingKeys = struct {
	sync.Mutex
	keys map[string]struct{}
}{keys: map[string]struct{}{}}

// reserveKey returns the key of a backup taken at t of revision, one millisecond later (or
// more) when another backup this process is taking holds it, and the function that releases
// it once the backup is committed or abandoned. One controller takes every scheduled backup,
// so no other process writes a key at the same time.
func reserveKey(t time.Time, revision int64) (string, func()) {
	takingKeys.Lock()
	defer takingKeys.Unlock()
	key := Key(t, revision)
	for _, taken := takingKeys.keys[key]; taken; _, taken = takingKeys.keys[key] {
		t = t.Add(time.Millisecond)
		key = Key(t, revision)
	}
	takingKeys.keys[key] = struct{}{}
	return key, func() {
		takingKeys.Lock()
		defer takingKeys.Unlock()
		delete(takingKeys.keys, key)
	}
}

// abort removes what upload wrote, with a fresh context: the abort must happen even when ctx
// is what failed the upload.
func abort(ctx context.Context, upload Upload) error {
	abortCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	return upload.Abort(abortCtx)
}

// Prune deletes all but the newest keep backups that the instance of taken (its provenance's
// instance UID) took in dest, and returns the deleted keys. taken is the backup that instance
// just took, never deleted even when keep newer ones exist: an instance whose revision fell
// (its data lost and started anew under the same UID) would otherwise see every new backup
// deleted right after it was taken. Backups another instance wrote (two instances sharing a
// bucket and prefix, or an earlier instance of the same name) are never deleted nor counted.
// It is meant to run only after a new backup succeeded, so that a failing schedule never eats
// into the backups that exist.
func Prune(ctx context.Context, dest Destination, taken Info, keep int) ([]string, error) {
	if keep < 1 {
		return nil, fmt.Errorf("keep must be at least 1, not %d", keep)
	}
	listed, err := dest.List(ctx)
	if err != nil {
		return nil, err
	}
	own := ownNewestFirst(listed, taken.InstanceUID)
	var deleted []string
	for _, old := range own[min(keep, len(own)):] {
		if old.Key == taken.Key {
			continue
		}
		if err := dest.Delete(ctx, old.Key); err != nil {
			return deleted, fmt.Errorf("deleting %s from %s: %w", old.Key, dest, err)
		}
		deleted = append(deleted, old.Key)
	}
	return deleted, nil
}

// Newest returns the newest backup the instance instanceUID took in dest (by its provenance,
// as Prune counts them: backups of another instance sharing the bucket and prefix, or of an
// earlier instance of the same name, are not its own), or ErrNotFound when it took none.
func Newest(ctx context.Context, dest Destination, instanceUID string) (Info, error) {
	backups, err := dest.List(ctx)
	if err != nil {
		return Info{}, err
	}
	if own := ownNewestFirst(backups, instanceUID); len(own) > 0 {
		return own[0], nil
	}
	if len(backups) > 0 {
		return Info{}, fmt.Errorf("none of the %d backups in %s is of instance UID %s: %w", len(backups), dest, instanceUID, ErrNotFound)
	}
	return Info{}, fmt.Errorf("%s holds no backup: %w", dest, ErrNotFound)
}

// ownNewestFirst returns the backups of the instance instanceUID among backups, newest first:
// by revision, which only grows over an instance's life (a restore or a recovery raises it
// above the replaced cluster's), then by key. A key's time is the clock of the controller
// that took it, which may have been wrong: a backup taken with a clock a year ahead would
// otherwise stay the newest, restored from and kept, while retention deleted every later one.
func ownNewestFirst(backups []Info, instanceUID string) []Info {
	var own []Info
	for _, b := range backups {
		if b.InstanceUID == instanceUID {
			own = append(own, b)
		}
	}
	sort.SliceStable(own, func(i, j int) bool {
		if own[i].Revision != own[j].Revision {
			return own[i].Revision > own[j].Revision
		}
		return own[i].Key > own[j].Key
	})
	return own
}

// sortNewestFirst orders backups by key, newest first: keys sort by time.
func sortNewestFirst(backups []Info) {
	sort.Slice(backups, func(i, j int) bool { return backups[i].Key > backups[j].Key })
}
