package backend

import (
	"fmt"
	"strconv"
	"time"
)

// Members compact their history by themselves by default: revisions older than an hour are
// compacted every hour, so that the history does not grow until the database reaches its quota
// (NOSPACE) unless every client compacts. etcd itself does not compact unless told to.
const (
	// DefaultAutoCompactionMode is the default of AutoCompaction.Mode.
	DefaultAutoCompactionMode = "periodic"
	// DefaultAutoCompactionRetention is the default of AutoCompaction.Retention.
	DefaultAutoCompactionRetention = "1h"
)

// AutoCompaction is how members compact their history by themselves: etcd's
// --auto-compaction-mode and --auto-compaction-retention, which it takes as they are.
type AutoCompaction struct {
	// Mode is "periodic" (Retention is a duration such as 30m, or a number of hours) or
	// "revision" (Retention is a number of revisions). Empty: DefaultAutoCompactionMode.
	Mode string
	// Retention is how much history members keep; 0 turns auto-compaction off. Empty:
	// DefaultAutoCompactionRetention.
	Retention string
}

// WithDefaults returns a with its empty fields set to their defaults.
func (a AutoCompaction) WithDefaults() AutoCompaction {
	if a.Mode == "" {
		a.Mode = DefaultAutoCompactionMode
	}
	if a.Retention == "" {
		a.Retention = DefaultAutoCompactionRetention
	}
	return a
}

// Validate returns an error naming the etcd flag whose value etcd would refuse or
// misread: an unknown mode, a negative or unreadable retention, or a duration in revision mode.
func (a AutoCompaction) Validate() error {
	n, err := strconv.ParseInt(a.Retention, 10, 64)
	isCount := err == nil
	switch a.Mode {
	case "periodic":
		if isCount {
			if n < 0 {
				return fmt.Errorf("--auto-compaction-retention %q: want a duration such as 1h or 30m, or a number of hours, not negative (0 turns auto-compaction off)", a.Retention)
			}
			return nil
		}
		if d, err := time.ParseDuration(a.Retention); err != nil || d < 0 {
			return fmt.Errorf("--auto-compaction-retention %q: want a duration such as 1h or 30m, or a number of hours (0 turns auto-compaction off)", a.Retention)
		}
	case "revision":
		if !isCount || n < 0 {
			return fmt.Errorf("--auto-compaction-retention %q: with --auto-compaction-mode=revision, want the number of revisions to keep, such as 10000 (0 turns auto-compaction off)", a.Retention)
		}
	default:
		return fmt.Errorf("--auto-compaction-mode %q: want periodic or revision", a.Mode)
	}
	return nil
}
