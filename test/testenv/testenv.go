// Package testenv answers the two questions every test tier asks about where it runs: where
// the repository is, and whether a missing prerequisite is a failure (in CI) or a skip.
package testenv

import (
	"errors"
	"os"
	"path/filepath"
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
