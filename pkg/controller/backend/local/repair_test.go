package local

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/controller/backend"
)

// recordJoin records the next member of the instance in idir as joining (not added to the
// cluster yet), as a scale-up interrupted right after its first record leaves it.
func recordJoin(t *testing.T, b *Backend, idir, name string) string {
	t.Helper()
	st, err := loadState(idir)
	if err != nil {
		t.Fatal(err)
	}
	m := memberState{Name: backend.MemberName(name, st.NextOrdinal), Ordinal: st.NextOrdinal, Phase: phaseJoining, ClusterState: "existing"}
	if m.PeerPort, m.ClientPort, err = b.freePorts(recordedPorts(st.Members)); err != nil {
		t.Fatal(err)
	}
	st.NextOrdinal++
	st.Members = append(st.Members, m)
	if err := st.save(idir); err != nil {
		t.Fatal(err)
	}
	return m.Name
}

// setRepairGrace sets the backend's member repair grace period (negative: repair off).
func setRepairGrace(b *Backend, grace time.Duration) {
	b.opts.MemberRepairGracePeriod, b.health.Grace = grace, grace
}

// TestAJoinDoesNotHoldUpRepair: a voting member loses its data while a scale-up's join is
// recorded. The join waits for every voting member to be healthy; the lost member is still
// dealt with: with repair off the instance is reported blocked on it, with repair on it is
// replaced, and the join and the replacement both finish. Before, the join waited for ever
// and repair never ran. Quorum lost while a join waits is reported as such.
func TestAJoinDoesNotHoldUpRepair(t *testing.T) {
	dir := t.TempDir()
	b := newBackend(t, dir)
	defer func() { _ = b.Close() }()
	inst := instance("j", 3, false)
	converge(t, b, inst)
	ctx := context.Background()
	idir := filepath.Join(dir, "instances", "ns", "j")
	joining := recordJoin(t, b, idir, "j")
	inst.Spec.Replicas = ptr.To[int32](4)
	loseMember(t, b, idir, "j-2")

	setRepairGrace(b, -1)
	for range 2 {
		res, err := b.Sync(ctx, inst)
		if err != nil || res.StepReason != backend.StepAddingMember || res.BlockedReason != backend.ReasonMemberRepairDisabled ||
			!strings.Contains(res.Blocked, "nothing replaces member j-2 (cannot start: its data directory is lost") || len(res.Events) != 0 {
			t.Fatalf("repair off, join waiting: %+v, %v", res, err)
		}
	}

	setRepairGrace(b, time.Millisecond)
	var events []string
	deadline := time.Now().Add(90 * time.Second)
	var res *backend.Result
	for {
		var err error
		res, err = b.Sync(ctx, inst)
		if res != nil {
			for _, e := range res.Events {
				events = append(events, string(e.Reason)+" "+e.Note)
			}
		}
		if err == nil && res.Converged {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("did not converge: %+v, %v; events %q", res, err, events)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var names []string
	for _, m := range res.Members {
		names = append(names, m.Name)
	}
	if !slices.Equal(names, []string{"j-0", "j-1", joining, "j-4"}) {
		t.Fatalf("members %v; events %q", names, events)
	}
	if !slices.ContainsFunc(events, func(e string) bool {
		return strings.HasPrefix(e, "MemberUnhealthy Replacing member j-2 with a new member j-4")
	}) ||
		!slices.ContainsFunc(events, func(e string) bool { return strings.HasPrefix(e, "MemberReplaced Replaced member j-2 with j-4") }) {
		t.Fatalf("events %q", events)
	}
	if _, err := os.Stat(filepath.Join(idir, "j-2")); !os.IsNotExist(err) {
		t.Fatalf("the replaced member's data is still there: %v", err)
	}

	// Two of four voting members lost while a join waits: quorum is lost, and said so.
	setRepairGrace(b, -1)
	recordJoin(t, b, idir, "j")
	inst.Spec.Replicas = ptr.To[int32](5)
	loseMember(t, b, idir, "j-3")
	loseMember(t, b, idir, "j-4")
	if res, err := b.Sync(ctx, inst); err != nil || res.QuorumLost != "quorum lost: 2 of 4 voting members do not answer (j-3, j-4); 3 are needed" {
		t.Fatalf("quorum lost while a join waits: %+v, %v", res, err)
	}
}

// TestALookThatSeesAMemberServeRestartsItsRepairClock: hc-0 failed once; looks that stop
// before the repair step (a scale-up's join, for minutes) then see it serve. Its next failure
// is a new one, not one that lasted since the first: repair would replace it at once
// ("unhealthy for 6m0s", its data discarded).
func TestALookThatSeesAMemberServeRestartsItsRepairClock(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b, now, _ := convergedOnAClock(t, dir, "hc")
	idir := filepath.Join(dir, "instances", "ns", "hc")
	key := filepath.Join(idir, "hc-0")
	b.health.Unhealthy(key)
	st, err := loadState(idir)
	if err != nil {
		t.Fatal(err)
	}
	access, err := accessFor(idir, st, false)
	if err != nil {
		t.Fatal(err)
	}
	for range 6 {
		*now = now.Add(time.Minute)
		if res, _, err := b.observe(ctx, idir, access, st); err != nil || res.Unhealthy != "" {
			t.Fatalf("look: %+v, %v", res, err)
		}
	}
	*now = now.Add(time.Second)
	if got := b.health.Unhealthy(key); got != 0 {
		t.Fatalf("hc-0 failing again counts as unhealthy for %s, want a new failure", got)
	}
}
