// Package durable replaces files so that a crash or a power loss leaves the old content or
// the new, whole, and never forgets a rename: etcd's recipe of writing a temporary file,
// syncing it, renaming it over the target and syncing the directory.
package durable

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"go.etcd.io/etcd/client/pkg/v3/fileutil"
)

// WriteFile replaces path with data, mode perm: data goes to a temporary file beside path
// (.NAME.*.tmp), which is synced and renamed over path, then the directory is synced so that
// the rename is on disk too. On an error path keeps its old content (or stays absent) and
// the temporary file is removed.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	return write(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// write is WriteFile with the content written by fill.
func write(path string, perm fs.FileMode, fill func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	err = fill(tmp)
	if err == nil {
		err = tmp.Chmod(perm)
	}
	if err == nil {
		err = fileutil.Fsync(tmp)
	}
	if closeErr := tmp.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// Rename renames oldpath to newpath and syncs newpath's directory (and oldpath's, when it is
// another), so that the rename survives a crash. oldpath's content must be synced already.
func Rename(oldpath, newpath string) error {
	if err := os.Rename(oldpath, newpath); err != nil {
		return err
	}
	if err := SyncDir(filepath.Dir(newpath)); err != nil {
		return err
	}
	if filepath.Dir(oldpath) != filepath.Dir(newpath) {
		return SyncDir(filepath.Dir(oldpath))
	}
	return nil
}

// SyncDir flushes dir's entries to disk: a file created, renamed or removed in dir survives a
// crash only once dir is synced.
func SyncDir(dir string) error {
	d, err := fileutil.OpenDir(dir)
	if err != nil {
		return err
	}
	defer func() { _ = d.Close() }()
	return fileutil.Fsync(d)
}

// MkdirAll creates path and any missing parents with mode perm (before the umask), as
// os.MkdirAll does, and syncs the parent of each directory it creates, so that the new
// directories survive a crash or a power loss once it returns. A directory that exists is
// left as it is; a file in the way is an error (syscall.ENOTDIR).
func MkdirAll(path string, perm fs.FileMode) error {
	path = filepath.Clean(path)
	info, err := os.Stat(path)
	switch {
	case err == nil && info.IsDir():
		return nil
	case err == nil:
		return &fs.PathError{Op: "mkdir", Path: path, Err: syscall.ENOTDIR}
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	parent := filepath.Dir(path)
	if parent != path {
		if err := MkdirAll(parent, perm); err != nil {
			return err
		}
	}
	if err := os.Mkdir(path, perm); err != nil {
		// Another process may have created it meanwhile: its entry is synced below all the same.
		if info, statErr := os.Stat(path); statErr != nil || !info.IsDir() {
			return err
		}
	}
	return SyncDir(parent)
}
