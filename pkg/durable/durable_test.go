package durable

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

// entries lists the names in dir.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	list, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range list {
		names = append(names, e.Name())
	}
	return names
}

// expectFile fails unless path holds want and is the only entry of its directory (no
// temporary file left).
func expectFile(t *testing.T, path, want string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil || string(got) != want {
		t.Errorf("%s holds %q (err=%v), want %q", path, got, err, want)
	}
	if names := entries(t, filepath.Dir(path)); !slices.Equal(names, []string{filepath.Base(path)}) {
		t.Errorf("directory holds %v, want only %s", names, filepath.Base(path))
	}
}

func TestWriteFileReplaces(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	if err := WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte("new"), 0o640); err != nil {
		t.Fatal(err)
	}
	expectFile(t, path, "new")
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o640 {
		t.Errorf("mode %v (err=%v), want 0640", info.Mode(), err)
	}
}

// TestWriteFailingPartWayKeepsTheOldFile: a write that fails after part of the new content
// was written (a full disk, say) leaves the old file whole, or no file when there was none,
// and no temporary file.
func TestWriteFailingPartWayKeepsTheOldFile(t *testing.T) {
	full := errors.New("no space left on device")
	fill := func(w io.Writer) error {
		if _, err := w.Write([]byte(`{"members": [`)); err != nil {
			return err
		}
		return full
	}
	path := filepath.Join(t.TempDir(), "state.json")
	if err := write(path, 0o600, fill); !errors.Is(err, full) {
		t.Fatalf("err = %v, want %v", err, full)
	}
	if names := entries(t, filepath.Dir(path)); len(names) != 0 {
		t.Fatalf("a failed first write left %v", names)
	}
	if err := WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := write(path, 0o600, fill); !errors.Is(err, full) {
		t.Fatalf("err = %v, want %v", err, full)
	}
	expectFile(t, path, "old")
}

// TestWriteFileFailingRenameLeavesNoTemporaryFile: when the rename fails (path is a
// non-empty directory), the synced temporary file is removed and path is untouched.
func TestWriteFileFailingRenameLeavesNoTemporaryFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	if err := os.MkdirAll(filepath.Join(path, "keep"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte("new"), 0o600); err == nil {
		t.Fatal("WriteFile over a non-empty directory succeeded")
	}
	if names := entries(t, dir); !slices.Equal(names, []string{"state.json"}) {
		t.Errorf("directory holds %v, want only state.json", names)
	}
	if names := entries(t, path); !slices.Equal(names, []string{"keep"}) {
		t.Errorf("%s holds %v, want keep", path, names)
	}
}

func TestWriteFileInAMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "state.json")
	if err := WriteFile(path, []byte("new"), 0o600); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want one that wraps os.ErrNotExist", err)
	}
}

func TestRename(t *testing.T) {
	from, to := t.TempDir(), t.TempDir()
	src := filepath.Join(from, "snapshot.db.1.part")
	if err := os.WriteFile(src, []byte("snapshot"), 0o600); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(to, "snapshot.db")
	if err := Rename(src, dst); err != nil {
		t.Fatal(err)
	}
	expectFile(t, dst, "snapshot")
	if names := entries(t, from); len(names) != 0 {
		t.Errorf("%s still holds %v", from, names)
	}
	if err := Rename(src, dst); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("renaming a missing file: err = %v, want os.ErrNotExist", err)
	}
	expectFile(t, dst, "snapshot")
}

// TestMkdirAll: the missing directories are created with the mode asked for, the existing
// ones are left as they are, and a file in the way is an error that creates nothing.
func TestMkdirAll(t *testing.T) {
	root := t.TempDir()
	if err := os.Chmod(root, 0o750); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, "instances", "ns", "name")
	if err := MkdirAll(path, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{filepath.Join(root, "instances"), filepath.Join(root, "instances", "ns"), path} {
		if info, err := os.Stat(dir); err != nil || !info.IsDir() || info.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v (err=%v), want a directory of mode 0700", dir, info.Mode(), err)
		}
	}
	if info, err := os.Stat(root); err != nil || info.Mode().Perm() != 0o750 {
		t.Errorf("the existing %s: mode %v (err=%v), want it left 0750", root, info.Mode(), err)
	}
	if err := MkdirAll(path, 0o755); err != nil {
		t.Errorf("MkdirAll of an existing directory: %v", err)
	}

	file := filepath.Join(root, "state.json")
	if err := os.WriteFile(file, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{file, filepath.Join(file, "pki")} {
		if err := MkdirAll(p, 0o700); !errors.Is(err, syscall.ENOTDIR) {
			t.Errorf("MkdirAll(%s) with a file in the way: err = %v, want ENOTDIR", p, err)
		}
	}
	if got, err := os.ReadFile(file); err != nil || string(got) != "{}" {
		t.Errorf("the file in the way holds %q (err=%v), want it untouched", got, err)
	}
}
