// Package pkitest damages certificate and key files the way a write cut short leaves them,
// for the tests of what loads them back.
package pkitest

import (
	"os"
	"testing"
)

// Halve cuts path to half its size, as a write cut short in place would leave it.
func Halve(t *testing.T, path string) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, info.Size()/2); err != nil {
		t.Fatal(err)
	}
}
