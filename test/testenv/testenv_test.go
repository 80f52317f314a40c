package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

func TestRepoRootHoldsTheModule(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "module github.com/etcdaas/etcdaas\n"; len(data) < len(want) || string(data[:len(want)]) != want {
		t.Fatalf("%s/go.mod starts with %q", root, data[:min(len(data), 40)])
	}
	if _, err := os.Stat(filepath.Join(root, "test", "testenv", "testenv.go")); err != nil {
		t.Fatalf("the root %s does not hold this package: %v", root, err)
	}
}

func TestInCI(t *testing.T) {
	for value, want := range map[string]bool{"true": true, "TRUE": true, "": false, "false": false, "1": false} {
		t.Setenv("CI", value)
		if got := InCI(); got != want {
			t.Errorf("CI=%q: InCI() = %v, want %v", value, got, want)
		}
	}
}
