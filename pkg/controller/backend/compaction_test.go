package backend

import (
	"strings"
	"testing"
)

// Auto-compaction settings etcd would refuse (at a member's start, after the controller
// started) or misread (a duration as a number of revisions) are refused by flag name.
func TestAutoCompactionValidate(t *testing.T) {
	if got := (AutoCompaction{}).WithDefaults(); got != (AutoCompaction{Mode: "periodic", Retention: "1h"}) {
		t.Errorf("defaults %+v", got)
	}
	for _, ok := range []AutoCompaction{{"periodic", "1h"}, {"periodic", "30m"}, {"periodic", "2"}, {"periodic", "0"},
		{"revision", "10000"}, {"revision", "0"}} {
		if err := ok.Validate(); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
	for _, tc := range []struct {
		a    AutoCompaction
		flag string
	}{
		{AutoCompaction{"hourly", "1h"}, "--auto-compaction-mode"},
		{AutoCompaction{"", "1h"}, "--auto-compaction-mode"},
		{AutoCompaction{"periodic", "-1h"}, "--auto-compaction-retention"},
		{AutoCompaction{"periodic", "-3"}, "--auto-compaction-retention"},
		{AutoCompaction{"periodic", "an hour"}, "--auto-compaction-retention"},
		{AutoCompaction{"revision", "1h"}, "--auto-compaction-retention"},
		{AutoCompaction{"revision", "-5"}, "--auto-compaction-retention"},
	} {
		if err := tc.a.Validate(); err == nil || !strings.Contains(err.Error(), tc.flag) {
			t.Errorf("%+v: %v, want an error naming %s", tc.a, err, tc.flag)
		}
	}
}
