package backend

import (
	"strings"
	"testing"
	"time"
)

func TestChooseReplacement(t *testing.T) {
	grace := time.Minute
	ok := func(name string) MemberHealth { return MemberHealth{Name: name, Healthy: true} }
	bad := func(name string, d time.Duration) MemberHealth {
		return MemberHealth{Name: name, UnhealthyFor: d, Problem: "cannot start: " + name + " is corrupt"}
	}
	for _, tc := range []struct {
		name    string
		voting  []MemberHealth
		grace   time.Duration
		want    string
		blocked string
	}{
		{name: "all healthy", voting: []MemberHealth{ok("a"), ok("b"), ok("c")}, grace: grace},
		{name: "within the grace period", voting: []MemberHealth{ok("a"), bad("b", 59*time.Second), ok("c")}, grace: grace},
		{name: "past the grace period", voting: []MemberHealth{ok("a"), bad("b", 61*time.Second), ok("c")}, grace: grace, want: "b"},
		{name: "the longest unhealthy first", voting: []MemberHealth{bad("a", 2*time.Minute), ok("b"), bad("c", 3*time.Minute), ok("d"), ok("e")}, grace: grace, want: "c"},
		{name: "removal would lose quorum", voting: []MemberHealth{ok("a"), bad("b", time.Hour), bad("c", time.Hour)}, grace: grace, blocked: "fewer than a quorum"},
		{name: "a lone member is never removed", voting: []MemberHealth{bad("a", time.Hour)}, grace: grace, blocked: "fewer than a quorum"},
		{name: "two of four healthy keep a quorum of three", voting: []MemberHealth{ok("a"), ok("b"), bad("c", time.Hour), bad("d", time.Hour)}, grace: grace, want: "c"},
		{name: "repair off", voting: []MemberHealth{ok("a"), bad("b", time.Hour), ok("c")}, grace: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, blocked := ChooseReplacement(tc.voting, tc.grace)
			got := ""
			if r != nil {
				got = r.Member.Name
				if !strings.Contains(r.Why, "is corrupt") || !strings.Contains(r.Why, tc.grace.String()) {
					t.Errorf("why %q does not say what is wrong and the grace period", r.Why)
				}
			}
			if got != tc.want {
				t.Errorf("replacement %q, want %q", got, tc.want)
			}
			if (blocked == "") != (tc.blocked == "") || !strings.Contains(blocked, tc.blocked) {
				t.Errorf("blocked %q, want %q", blocked, tc.blocked)
			}
		})
	}
}

func TestHealthClockKeepsCountingThroughACrashLoop(t *testing.T) {
	now := time.Unix(1000, 0)
	c := &HealthClock{Grace: time.Minute, Now: func() time.Time { return now }}
	c.Healthy("m") // never unhealthy: nothing to remember
	if d := c.Unhealthy("m"); d != 0 {
		t.Fatalf("first unhealthy observation: %s", d)
	}
	// Up again briefly between crashes: the clock keeps running.
	for range 5 {
		now = now.Add(10 * time.Second)
		c.Healthy("m")
		now = now.Add(5 * time.Second)
		c.Unhealthy("m")
	}
	if d := c.Unhealthy("m"); d != 75*time.Second {
		t.Fatalf("unhealthy for %s after a crash loop, want 75s", d)
	}
	// Healthy for the settle time (30s, shorter than the grace period): forgiven.
	c.Healthy("m")
	now = now.Add(30 * time.Second)
	c.Healthy("m")
	if d := c.Unhealthy("m"); d != 0 {
		t.Fatalf("a member healthy for 30s still counts %s", d)
	}
	now = now.Add(time.Second)
	c.Forget("m")
	if d := c.Unhealthy("m"); d != 0 {
		t.Fatalf("a forgotten member counts %s", d)
	}
}

// TestHealthClockForgetPrefix: the records of one instance's members go, another's stay.
func TestHealthClockForgetPrefix(t *testing.T) {
	now := time.Unix(1000, 0)
	c := &HealthClock{Grace: time.Minute, Now: func() time.Time { return now }}
	for _, key := range []string{"ns/db/1", "ns/db/2", "ns/db2/1"} {
		c.Unhealthy(key)
	}
	now = now.Add(time.Hour)
	c.ForgetPrefix("ns/db/")
	for key, want := range map[string]time.Duration{"ns/db/1": 0, "ns/db/2": 0, "ns/db2/1": time.Hour} {
		if got := c.Unhealthy(key); got != want {
			t.Errorf("%s unhealthy for %s after forgetting ns/db/, want %s", key, got, want)
		}
	}
}

// TestRepairOffBlock: with repair off, a member whose data is lost blocks the instance at
// once, one merely unhealthy only past RepairOffDeadline; with repair on nothing blocks (the
// member will be replaced). The message names the members and what a person can do.
func TestRepairOffBlock(t *testing.T) {
	ok := MemberHealth{Name: "db-0", Healthy: true}
	lost := MemberHealth{Name: "db-1", DataLost: true, Problem: "cannot start: its data directory is lost: /d/db-1 does not exist"}
	down := func(d time.Duration) MemberHealth {
		return MemberHealth{Name: "db-2", UnhealthyFor: d, Problem: "connection refused"}
	}
	for _, tc := range []struct {
		name   string
		voting []MemberHealth
		grace  time.Duration
		want   []string
	}{
		{name: "healthy", voting: []MemberHealth{ok}, grace: -1},
		{name: "data lost, repair on", voting: []MemberHealth{ok, lost}, grace: time.Minute},
		{name: "unhealthy for long, repair on", voting: []MemberHealth{ok, down(time.Hour)}, grace: time.Minute},
		{name: "data lost", voting: []MemberHealth{ok, lost}, grace: -1,
			want: []string{"nothing replaces member db-1 (cannot start: its data directory is lost: /d/db-1 does not exist) and nothing changes until a person acts"}},
		{name: "unhealthy within the deadline", voting: []MemberHealth{ok, down(RepairOffDeadline)}, grace: 0},
		{name: "unhealthy past the deadline", voting: []MemberHealth{ok, down(RepairOffDeadline + time.Second)}, grace: 0,
			want: []string{"nothing replaces member db-2 (unhealthy for longer than 5m0s; Degraded says why) and"}},
		{name: "both", voting: []MemberHealth{ok, lost, down(time.Hour)}, grace: -1,
			want: []string{"member db-1 (cannot start: its data directory is lost: /d/db-1 does not exist), member db-2 (unhealthy for longer than 5m0s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := RepairOffBlock(tc.voting, tc.grace, "db")
			if len(tc.want) == 0 {
				if got != "" {
					t.Fatalf("blocked: %q", got)
				}
				return
			}
			want := append(tc.want, "member repair is off (--member-repair-grace-period=0)", "--member-repair-grace-period above 0", "`kubectl etcdaas recover db`")
			for _, w := range want {
				if !strings.Contains(got, w) {
					t.Errorf("%q does not say %q", got, w)
				}
			}
			res := &Result{}
			if NoteRepairOff(res, tc.voting, tc.grace, "db"); res.Blocked != got || res.BlockedReason != ReasonMemberRepairDisabled || res.BlockedReason.Type() != EventTypeWarning {
				t.Errorf("result %+v", res)
			}
		})
	}
}

// TestHealthClockWithRepairOffKeepsCountingThroughACrashLoop: with repair off the clock still
// counts (for RepairOffDeadline), and a member up between crashes is forgiven only after 30s.
func TestHealthClockWithRepairOffKeepsCountingThroughACrashLoop(t *testing.T) {
	now := time.Unix(1000, 0)
	c := &HealthClock{Grace: -1, Now: func() time.Time { return now }}
	c.Unhealthy("m")
	for range 30 {
		now = now.Add(10 * time.Second)
		c.Healthy("m")
		now = now.Add(5 * time.Second)
		c.Unhealthy("m")
	}
	if d := c.Unhealthy("m"); d != 450*time.Second {
		t.Fatalf("unhealthy for %s after a crash loop, want 7m30s", d)
	}
	c.Healthy("m")
	now = now.Add(30 * time.Second)
	c.Healthy("m")
	if d := c.Unhealthy("m"); d != 0 {
		t.Fatalf("a member healthy for 30s still counts %s", d)
	}
}
