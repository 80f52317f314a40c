package testenv

import (
	"flag"
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

func TestDefaultParallelKeepsAGivenValue(t *testing.T) {
	f := flag.Lookup("test.parallel")
	if f == nil {
		t.Fatal("no -test.parallel flag")
	}
	old := f.Value.String()
	t.Cleanup(func() { _ = flag.Set("test.parallel", old) })
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	want := "7"
	if given {
		want = old // this run was given -test.parallel
	}
	if err := DefaultParallel(7); err != nil {
		t.Fatal(err)
	}
	if got := f.Value.String(); got != want {
		t.Fatalf("-test.parallel = %s after DefaultParallel(7), want %s", got, want)
	}
	// Now it counts as given: a second default does not change it.
	if err := DefaultParallel(9); err != nil {
		t.Fatal(err)
	}
	if got := f.Value.String(); got != want {
		t.Fatalf("a second DefaultParallel changed -test.parallel to %s, want %s kept", got, want)
	}
}
