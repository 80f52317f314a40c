// Package backupkey names backups: the key a backup is stored under in its destination sorts
// by the time it was taken and carries its etcd revision, such as
// "20261129T030512.123Z-r4711.db". It depends on nothing, so that validation can tell a key
// from anything else without the destinations' dependencies.
package backupkey

import (
	"strconv"
	"strings"
	"time"
)

// timeLayout names backups so that keys sort by time: UTC, fixed width, milliseconds.
const timeLayout = "20060102T150405.000Z"

// suffix ends every backup key; it also tells backups from anything else in a bucket.
const suffix = ".db"

// Example is a key as New returns it, for messages.
const Example = "20261129T030512.123Z-r4711.db"

// New returns the key of a backup taken at t of the given revision, such as Example.
func New(t time.Time, revision int64) string {
	return t.UTC().Format(timeLayout) + "-r" + strconv.FormatInt(revision, 10) + suffix
}

// Valid reports whether name is a key New returns.
func Valid(name string) bool {
	stamp, rest, ok := strings.Cut(name, "-r")
	if !ok || !strings.HasSuffix(rest, suffix) {
		return false
	}
	if _, err := time.Parse(timeLayout, stamp); err != nil {
		return false
	}
	_, err := strconv.ParseInt(strings.TrimSuffix(rest, suffix), 10, 64)
	return err == nil
}
