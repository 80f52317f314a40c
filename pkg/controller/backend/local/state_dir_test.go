package local

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestSaveCreatesTheInstanceDirectory: an instance's first save creates its directory and
// the missing ones above it (mode 0700, each synced into its parent by durable.MkdirAll)
// with the state inside; a file where a directory goes is ENOTDIR, and nothing is written.
func TestSaveCreatesTheInstanceDirectory(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "instances", "ns", "name")
	st := &instanceState{UID: "uid", ClusterToken: "token"}
	if err := st.save(dir); err != nil {
		t.Fatal(err)
	}
	for d := dir; d != root; d = filepath.Dir(d) {
		if info, err := os.Stat(d); err != nil || !info.IsDir() || info.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v (err=%v), want a directory of mode 0700", d, info.Mode(), err)
		}
	}
	if got, err := loadState(dir); err != nil || got.UID != "uid" {
		t.Fatalf("state read back: %+v, %v", got, err)
	}

	blocked := filepath.Join(root, "instances", "other")
	if err := os.WriteFile(blocked, []byte("in the way"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := st.save(filepath.Join(blocked, "name")); !errors.Is(err, syscall.ENOTDIR) {
		t.Fatalf("save below a file: err = %v, want ENOTDIR", err)
	}
	if got, _ := os.ReadFile(blocked); string(got) != "in the way" {
		t.Errorf("the file in the way holds %q", got)
	}
}
