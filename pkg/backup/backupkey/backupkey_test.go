package backupkey

import (
	"testing"
	"time"
)

func TestKeysSortByTimeAndAreValid(t *testing.T) {
	base := time.Date(2026, 11, 29, 3, 5, 12, 123e6, time.UTC)
	if got := New(base, 4711); got != Example {
		t.Errorf("New = %q, want %q", got, Example)
	}
	a, b, c := New(base, 999), New(base.Add(time.Millisecond), 5), New(base.Add(24*time.Hour), 1)
	if !(a < b && b < c) {
		t.Fatalf("keys do not sort by time: %s %s %s", a, b, c)
	}
	for _, k := range []string{a, b, c, Example} {
		if !Valid(k) {
			t.Errorf("Valid(%q) = false", k)
		}
	}
	for _, k := range []string{"", "x.db", Example + ".json", "default/x/" + Example, "../" + Example, "20261129T030509.000Z-rx.db"} {
		if Valid(k) {
			t.Errorf("Valid(%q) = true", k)
		}
	}
}
