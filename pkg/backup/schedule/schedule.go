// Package schedule parses the cron schedules of spec.backup and decides when the next backup
// is due: in UTC, once for any number of slots missed while the controller was away, and
// retried with backoff after a failure without waiting for the next slot.
package schedule

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// MinInterval is the shortest interval an "@every" schedule may have: a five-field cron
// expression cannot fire more often than once a minute either.
const MinInterval = time.Minute

var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Parse parses a schedule: five cron fields (minute hour day-of-month month day-of-week) or a
// descriptor such as "@daily" or "@every 6h". Schedules are always evaluated in UTC, so a
// time zone prefix is refused rather than silently honoured, and one no date matches (such as
// February 30) is refused rather than taken as due at every moment.
func Parse(spec string) (cron.Schedule, error) {
	trimmed := strings.TrimSpace(spec)
	if trimmed == "" {
		return nil, errors.New("must not be empty")
	}
	if strings.HasPrefix(trimmed, "TZ=") || strings.HasPrefix(trimmed, "CRON_TZ=") {
		return nil, errors.New("must not name a time zone: schedules are evaluated in UTC")
	}
	sched, err := parser.Parse(trimmed)
	if err != nil {
		return nil, fmt.Errorf("not a cron schedule of five fields or a descriptor such as @daily: %w", err)
	}
	if _, ok := sched.(cron.ConstantDelaySchedule); ok {
		if err := checkInterval(trimmed); err != nil {
			return nil, err
		}
	}
	if sched.Next(time.Now().UTC()).IsZero() {
		// cron's Next looks five years ahead and returns the zero time when nothing matches,
		// which a caller would take for a backup due at once, again and again.
		return nil, errors.New("never fires: no date matches its day-of-month and month fields (such as 30 2 for February 30)")
	}
	return sched, nil
}

// checkInterval refuses an "@every" schedule shorter than MinInterval, naming the interval as
// written: cron rounds one below a second up to a second, so "@every 0s" or "@every -5m" would
// otherwise be reported as running every second.
func checkInterval(every string) error {
	written := strings.TrimSpace(strings.TrimPrefix(every, "@every"))
	interval, err := time.ParseDuration(written)
	if err != nil {
		return fmt.Errorf("not a cron schedule of five fields or a descriptor such as @daily: %w", err)
	}
	if interval < MinInterval {
		return fmt.Errorf("runs every %s; the shortest interval is %s", written, MinInterval)
	}
	return nil
}

// Retry bounds the backoff between attempts after a failed backup.
type Retry struct {
	// Initial is the wait after the first failure; it doubles after each further failure.
	Initial time.Duration
	// Max caps the wait.
	Max time.Duration
}

// DefaultRetry is the backoff the controller uses: 30s, 1m, 2m, … up to 10m.
var DefaultRetry = Retry{Initial: 30 * time.Second, Max: 10 * time.Minute}

// Delay returns how long to wait after the given number of consecutive failures (≥ 1).
func (r Retry) Delay(failures int) time.Duration {
	d := r.Initial
	for i := 1; i < failures && d < r.Max; i++ {
		d *= 2
	}
	return min(d, r.Max)
}

// State is what the controller knows about an instance's schedule.
type State struct {
	// Created is when the instance was created: the first slot is the first one after it.
	Created time.Time
	// LastAttempt is when the latest backup started; zero when none ever did.
	LastAttempt time.Time
	// Failures counts the consecutive failed attempts up to LastAttempt.
	Failures int
}

// Next returns when the next backup is due. A due time at or before now means "run now": it
// is the earliest slot not yet attempted, so that however many slots passed while the
// controller was down, exactly one backup runs on its return. After failures the retry
// comes before the next slot when the backoff is shorter.
func Next(sched cron.Schedule, st State, retry Retry) time.Time {
	from := st.Created
	if !st.LastAttempt.IsZero() {
		from = st.LastAttempt
	}
	next := sched.Next(from.UTC())
	if st.Failures > 0 && !st.LastAttempt.IsZero() {
		if again := st.LastAttempt.Add(retry.Delay(st.Failures)); again.Before(next) {
			next = again
		}
	}
	return next
}
