// Package testenv answers the questions every test tier asks about where it runs: where the
// repository is, whether a missing prerequisite is a failure (in CI) or a skip, and how many
// of its waiting tests share the machine at once.
package testenv

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// RepoRoot returns the directory holding the module's go.mod, searched upward from the
// working directory (a test's working directory is its package's).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// InCI reports whether the tests run in CI (CI=true, in any case), where a missing tool or
// binary fails the test instead of skipping it.
func InCI() bool {
	return strings.EqualFold(os.Getenv("CI"), "true")
}

// DefaultParallel sets how many tests marked t.Parallel run at once to n unless -test.parallel
// was given. go test's default is GOMAXPROCS, but a tier whose tests mostly wait (for pods,
// grace periods, schedules) shares a small machine well with more. Call it from TestMain
// after flag.Parse.
func DefaultParallel(n int) error {
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	if given {
		return nil
	}
	return flag.Set("test.parallel", strconv.Itoa(n))
}
