package backend

import (
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"
)

// DefaultMemberRepairGracePeriod is how long a voting member may stay unhealthy before it is
// replaced, unless the controller is told otherwise (--member-repair-grace-period).
const DefaultMemberRepairGracePeriod = 5 * time.Minute

// maxSettle bounds how long a member that was unhealthy must be seen healthy before it counts
// as healthy again.
const maxSettle = 30 * time.Second

// HealthClock remembers since when each member has been unhealthy, so that a member is
// replaced only once it stayed unhealthy for longer than the grace period. A member that
// was unhealthy counts as healthy again only once it has been seen healthy for 30 seconds
// (or the grace period, when shorter) with no failure in between: a member that keeps
// failing (a crash loop) keeps its clock running. The clock lives in memory, so a restarted
// controller starts counting again: it never replaces a member sooner than the grace period.
// It is safe for concurrent use.
type HealthClock struct {
	// Grace is the grace period; zero or less turns repair off.
	Grace time.Duration
	// Now returns the current time (default time.Now).
	Now func() time.Time

	mu      sync.Mutex
	members map[string]*memberClock
}

// memberClock is one member's record: unhealthy since, and seen healthy again since.
type memberClock struct {
	unhealthySince, healthySince time.Time
}

func (c *HealthClock) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Unhealthy notes that the member key is unhealthy now and returns how long it has been.
func (c *HealthClock) Unhealthy(key string) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.members == nil {
		c.members = map[string]*memberClock{}
	}
	now := c.now()
	m, ok := c.members[key]
	if !ok {
		m = &memberClock{unhealthySince: now}
		c.members[key] = m
	}
	m.healthySince = time.Time{}
	return now.Sub(m.unhealthySince)
}

// Healthy notes that the member key is healthy now; once it stayed healthy long enough its
// record is forgotten.
func (c *HealthClock) Healthy(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.members[key]
	if !ok {
		return
	}
	now := c.now()
	if m.healthySince.IsZero() {
		m.healthySince = now
	}
	if now.Sub(m.healthySince) >= c.settle() {
		delete(c.members, key)
	}
}

// settle is how long a member that was unhealthy must be seen healthy before it counts as
// healthy again: maxSettle, or the grace period when shorter. With repair off the clock still
// says how long members have been unhealthy (RepairOffBlock), so a crash loop keeps counting.
func (c *HealthClock) settle() time.Duration {
	if c.Grace <= 0 {
		return maxSettle
	}
	return min(c.Grace, maxSettle)
}

// Forget drops the record of a member that is gone (replaced or removed).
func (c *HealthClock) Forget(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.members, key)
}

// ForgetPrefix drops the records of every member whose key starts with prefix: the members
// of an instance that is gone.
func (c *HealthClock) ForgetPrefix(prefix string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	maps.DeleteFunc(c.members, func(key string, _ *memberClock) bool { return strings.HasPrefix(key, prefix) })
}

// MemberHealth is what a backend observed about one voting member, for ChooseReplacement.
type MemberHealth struct {
	// Name is the member's name.
	Name string
	// Healthy is true when the member answers.
	Healthy bool
	// UnhealthyFor is how long the member has been unhealthy (see HealthClock).
	UnhealthyFor time.Duration
	// Problem says why the member is unhealthy.
	Problem string
	// DataLost is true when the member's data is gone or unreadable (its data directory, its
	// volume): it cannot come back by itself.
	DataLost bool
}

// Replacement is the decision to replace one unhealthy voting member.
type Replacement struct {
	// Member is the member to replace.
	Member MemberHealth
	// Why explains the decision for Events and logs.
	Why string
}

// ChooseReplacement chooses the voting member to replace among voting (every voting member of
// the cluster): the one unhealthy the longest, when that is longer than grace and removing it
// keeps quorum (the healthy members left are a majority of the membership without it). It
// returns nil when no member is due, with blocked explaining why a due member is kept.
func ChooseReplacement(voting []MemberHealth, grace time.Duration) (r *Replacement, blocked string) {
	if grace <= 0 {
		return nil, ""
	}
	healthy := 0
	var due *MemberHealth
	for i := range voting {
		m := &voting[i]
		switch {
		case m.Healthy:
			healthy++
		case m.UnhealthyFor > grace && (due == nil || m.UnhealthyFor > due.UnhealthyFor):
			due = m
		}
	}
	if due == nil {
		return nil, ""
	}
	if healthy < Quorum(len(voting)-1) {
		return nil, fmt.Sprintf("member %s has been unhealthy for %s, but removing it would leave %d healthy of %d voting members, fewer than a quorum",
			due.Name, due.UnhealthyFor.Round(time.Second), healthy, len(voting)-1)
	}
	return &Replacement{Member: *due, Why: fmt.Sprintf("unhealthy for %s, longer than the grace period of %s: %s",
		due.UnhealthyFor.Round(100*time.Millisecond), grace, due.Problem)}, ""
}

// RepairOffDeadline is how long a voting member may stay unhealthy while member repair is off
// before the instance is reported blocked on it (RepairOffBlock): as long as repair would
// wait by default. A member whose data is lost is reported at once.
const RepairOffDeadline = DefaultMemberRepairGracePeriod

// RepairOffBlock explains, when member repair is off (grace zero or less), why the instance
// named instance will not go on until a person acts, and what the person can do: the voting
// members among voting whose data is lost, or that have been unhealthy for longer than
// RepairOffDeadline, are never replaced. It returns "" when repair is on or no member is so.
// The message does not change from one look to the next, so that neither does the status.
func RepairOffBlock(voting []MemberHealth, grace time.Duration, instance string) string {
	if grace > 0 {
		return ""
	}
	var stuck []string
	for _, m := range voting {
		switch {
		case m.Healthy:
		case m.DataLost:
			stuck = append(stuck, fmt.Sprintf("member %s (%s)", m.Name, m.Problem))
		case m.UnhealthyFor > RepairOffDeadline:
			stuck = append(stuck, fmt.Sprintf("member %s (unhealthy for longer than %s; Degraded says why)", m.Name, RepairOffDeadline))
		}
	}
	if len(stuck) == 0 {
		return ""
	}
	return fmt.Sprintf("member repair is off (--member-repair-grace-period=0), so nothing replaces %s and nothing changes until a person acts: "+
		"bring the member back (restore its data, or fix what keeps it from serving), or run the controller with a --member-repair-grace-period above 0 "+
		"to have it replaced by a new member while the others keep quorum; should the instance lose quorum, "+
		"`kubectl etcdaas recover %s` rebuilds it from a surviving member", strings.Join(stuck, ", "), instance)
}

// NoteRepairOff records in res, when RepairOffBlock finds the instance blocked, that it is
// (Blocked, with reason ReasonMemberRepairDisabled).
func NoteRepairOff(res *Result, voting []MemberHealth, grace time.Duration, instance string) {
	if block := RepairOffBlock(voting, grace, instance); block != "" {
		res.Blocked, res.BlockedReason = block, ReasonMemberRepairDisabled
	}
}
