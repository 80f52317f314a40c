package schedule

import (
	"strings"
	"testing"
	"time"
)

func mustParse(t *testing.T, spec string) interface{ Next(time.Time) time.Time } {
	t.Helper()
	sched, err := Parse(spec)
	if err != nil {
		t.Fatalf("Parse(%q): %v", spec, err)
	}
	return sched
}

func TestParse(t *testing.T) {
	for spec, ok := range map[string]bool{
		"* * * * *":             true,
		"0 */6 * * *":           true,
		"@daily":                true,
		"@every 5m":             true,
		"@every 30s":            false,
		"":                      false,
		"* * * *":               false,
		"0 0 * * * *":           false,
		"TZ=UTC 0 * * * *":      false,
		"CRON_TZ=UTC 0 * * * *": false,
		"61 * * * *":            false,
		"0 0 30 2 *":            false, // February 30: no date matches
		"0 0 31 4,6,9,11 *":     false,
		"0 0 29 2 *":            true, // leap days come every four years
		"0 0 31 * *":            true,
	} {
		if _, err := Parse(spec); (err == nil) != ok {
			t.Errorf("Parse(%q) error %v, want ok=%v", spec, err, ok)
		}
	}
}

func TestParseIsUTC(t *testing.T) {
	sched := mustParse(t, "0 3 * * *")
	from := time.Date(2026, 1, 1, 12, 0, 0, 0, time.FixedZone("UTC+5", 5*3600))
	want := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	if got := sched.Next(from.UTC()); !got.Equal(want) {
		t.Fatalf("next = %s, want %s", got, want)
	}
}

func TestNextRunsMissedSlotsOnce(t *testing.T) {
	sched := mustParse(t, "0 * * * *") // hourly
	created := time.Date(2026, 1, 1, 0, 30, 0, 0, time.UTC)

	// Never ran: the first slot after creation.
	if got, want := Next(sched, State{Created: created}, DefaultRetry), created.Add(30*time.Minute); !got.Equal(want) {
		t.Fatalf("first backup due %s, want %s", got, want)
	}
	// The controller was away for five hours after an attempt at 01:00: the backup is due at
	// once (02:00 is in the past), and after the one attempt at 06:10 the next is 07:00, not
	// the four slots it missed.
	last := time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC)
	now := time.Date(2026, 1, 1, 6, 10, 0, 0, time.UTC)
	if due := Next(sched, State{Created: created, LastAttempt: last}, DefaultRetry); !due.Before(now) {
		t.Fatalf("missed backup due %s, want before %s", due, now)
	}
	if got, want := Next(sched, State{Created: created, LastAttempt: now}, DefaultRetry), time.Date(2026, 1, 1, 7, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Fatalf("after catching up, next due %s, want %s", got, want)
	}
}

func TestNextRetriesWithBackoff(t *testing.T) {
	sched := mustParse(t, "0 0 * * *") // daily
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	attempt := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	retry := Retry{Initial: 30 * time.Second, Max: 10 * time.Minute}
	for failures, wait := range map[int]time.Duration{1: 30 * time.Second, 2: time.Minute, 3: 2 * time.Minute, 6: 10 * time.Minute, 50: 10 * time.Minute} {
		got := Next(sched, State{Created: created, LastAttempt: attempt, Failures: failures}, retry)
		if want := attempt.Add(wait); !got.Equal(want) {
			t.Errorf("%d failures: retry at %s, want %s", failures, got, want)
		}
	}
	// A slot sooner than the backoff wins.
	minutely := mustParse(t, "* * * * *")
	if got, want := Next(minutely, State{Created: created, LastAttempt: attempt, Failures: 6}, retry), attempt.Add(time.Minute); !got.Equal(want) {
		t.Errorf("retry at %s, want the next slot %s", got, want)
	}
}

// TestParseNamesTheIntervalAsWritten: an "@every" interval below a second is rounded up to a
// second by cron; the error names what the user wrote, not the rounded "1s".
func TestParseNamesTheIntervalAsWritten(t *testing.T) {
	for _, spec := range []string{"@every 0s", "@every -5m", "@every 500ms", "@every 59s"} {
		_, err := Parse(spec)
		if err == nil {
			t.Fatalf("Parse(%q) accepted", spec)
		}
		written := strings.TrimPrefix(spec, "@every ")
		if !strings.Contains(err.Error(), "runs every "+written+";") {
			t.Errorf("Parse(%q): %v, want it to name %q", spec, err, written)
		}
	}
}
