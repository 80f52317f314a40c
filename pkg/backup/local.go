package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/klog/v2"

	"github.com/etcdaas/etcdaas/pkg/durable"
)

// metaSuffix names the sidecar file that holds a local backup's provenance.
const metaSuffix = ".json"

// Local keeps backups as files in one directory of the server: <dir>/<key> with the
// provenance in <dir>/<key>.json. A backup is written under a temporary name, synced, and
// renamed into place after its sidecar, so that a key that exists is always complete.
type Local struct {
	dir string
}

// LocalDir returns the directory of one instance's backups below the server's backup
// directory: <root>/<namespace>/<name>. Namespace and name are API object names, which can
// neither be empty nor hold a path separator.
func LocalDir(root, namespace, name string) (string, error) {
	for _, part := range []string{namespace, name} {
		if part == "" || part == "." || part == ".." || strings.ContainsAny(part, `/\`) {
			return "", fmt.Errorf("%q is not a namespace or instance name", part)
		}
	}
	return filepath.Join(root, namespace, name), nil
}

// NewLocal returns the destination in dir, which is created when a backup is written.
func NewLocal(dir string) *Local { return &Local{dir: dir} }

// String names the directory.
func (l *Local) String() string { return "local directory " + l.dir }

func (l *Local) path(key string) (string, error) {
	if !IsKey(key) {
		return "", fmt.Errorf("%q: %w", key, ErrNotFound)
	}
	return filepath.Join(l.dir, key), nil
}

// Write streams body into a temporary file of the directory and syncs it. It first deletes
// what earlier writes cut short by a crash left behind (see removeInterrupted).
func (l *Local) Write(ctx context.Context, key, _ string, body io.Reader) (Upload, error) {
	final, err := l.path(key)
	if err != nil {
		return nil, err
	}
	if err := durable.MkdirAll(l.dir, 0o700); err != nil {
		return nil, err
	}
	if err := l.removeInterrupted(); err != nil {
		// What earlier writes left is no reason to skip this backup (as in Take).
		klog.InfoS("Could not delete what interrupted backup writes left", "directory", l.dir, "err", err)
	}
	f, err := os.CreateTemp(l.dir, "."+key+".*.tmp")
	if err != nil {
		return nil, err
	}
	up := &localUpload{dest: l, final: final, tmp: f.Name()}
	_, err = io.Copy(f, &contextReader{ctx: ctx, r: body})
	if err == nil {
		err = f.Sync()
	}
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return nil, errors.Join(err, up.Abort(ctx))
	}
	return up, nil
}

// removeInterrupted deletes the temporary files of writes that never finished, and sidecars
// whose backup was never renamed into place (or was deleted before them): what a process
// killed in the middle of Write, Commit or Delete leaves. One backup of an instance is
// written at a time (the controller takes them one per instance, under leader election),
// so when a write starts, nothing else is being written to the directory.
func (l *Local) removeInterrupted() error {
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		orphan := false
		if key, ok := strings.CutSuffix(name, metaSuffix); ok && IsKey(key) {
			_, err := os.Lstat(filepath.Join(l.dir, key))
			orphan = errors.Is(err, fs.ErrNotExist)
		}
		temporary := strings.HasPrefix(name, ".") && strings.HasSuffix(name, ".tmp")
		if !e.Type().IsRegular() || !(temporary || orphan) {
			continue
		}
		if err := os.Remove(filepath.Join(l.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

type localUpload struct {
	dest       *Local
	final, tmp string
}

// Commit writes the sidecar, then renames the snapshot into place and syncs the directory.
func (u *localUpload) Commit(ctx context.Context, info Info) error {
	data, err := json.MarshalIndent(info.metadata(), "", "  ")
	if err != nil {
		return err
	}
	if err := durable.WriteFile(u.final+metaSuffix, data, 0o600); err != nil {
		return err
	}
	if err := os.Rename(u.tmp, u.final); err != nil {
		return errors.Join(err, os.Remove(u.final+metaSuffix))
	}
	return durable.SyncDir(u.dest.dir)
}

// Abort removes the temporary file.
func (u *localUpload) Abort(context.Context) error {
	if err := os.Remove(u.tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// List reads the directory: every key with its sidecar, newest first. Temporary files and
// anything else are skipped.
func (l *Local) List(ctx context.Context) ([]Info, error) {
	entries, err := os.ReadDir(l.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Info
	for _, e := range entries {
		if !e.Type().IsRegular() || !IsKey(e.Name()) {
			continue
		}
		info, err := l.stat(e.Name())
		if skipForeign(err) || skipDeleted(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	sortNewestFirst(out)
	return out, nil
}

func (l *Local) stat(key string) (Info, error) {
	p, err := l.path(key)
	if err != nil {
		return Info{}, err
	}
	st, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return Info{}, fmt.Errorf("%s in %s: %w", key, l, ErrNotFound)
	}
	if err != nil {
		return Info{}, err
	}
	data, err := os.ReadFile(p + metaSuffix)
	if errors.Is(err, fs.ErrNotExist) {
		return Info{}, fmt.Errorf("%s: %w: no %s", key, ErrNoProvenance, metaSuffix)
	}
	if err != nil {
		return Info{}, fmt.Errorf("provenance of %s: %w", key, err)
	}
	// A sidecar is ours: whatever is wrong with it is reported, never skipped.
	var meta map[string]string
	if err := json.Unmarshal(data, &meta); err != nil {
		return Info{}, fmt.Errorf("provenance of %s: %w", key, err)
	}
	info, err := infoFromMetadata(key, meta, st.Size())
	if errors.Is(err, ErrNoProvenance) {
		return Info{}, fmt.Errorf("provenance of %s: %s", key, err)
	}
	return info, err
}

// Open opens the snapshot under key.
func (l *Local) Open(ctx context.Context, key string) (io.ReadCloser, Info, error) {
	info, err := l.stat(key)
	if err != nil {
		return nil, Info{}, err
	}
	f, err := os.Open(filepath.Join(l.dir, key))
	if err != nil {
		return nil, Info{}, err
	}
	return f, info, nil
}

// Delete removes the snapshot, then its sidecar: a snapshot never lives without provenance.
func (l *Local) Delete(ctx context.Context, key string) error {
	p, err := l.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Remove(p + metaSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return durable.SyncDir(l.dir)
}

// contextReader ends a copy when ctx is done.
type contextReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *contextReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
