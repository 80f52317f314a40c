package local

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
)

// noteHealth feeds what observe saw about the unhealthy voting members into the health
// clock (observe noted the healthy ones) and returns each voting member's health for
// backend.ChooseReplacement.
func (b *Backend) noteHealth(dir string, st *instanceState, observed *backend.Result) []backend.MemberHealth {
	ready := map[string]bool{}
	for _, ms := range observed.Members {
		ready[ms.Name] = ms.Ready
	}
	var out []backend.MemberHealth
	for i := range st.Members {
		m := &st.Members[i]
		if m.Phase != phaseVoting {
			continue
		}
		h := backend.MemberHealth{Name: m.Name, Healthy: ready[m.Name]}
		if !h.Healthy {
			h.UnhealthyFor, h.Problem = b.health.Unhealthy(filepath.Join(dir, m.Name)), observed.MemberProblems[m.Name]
			err := b.startError(dir, m)
			h.DataLost = errors.Is(err, errDataLost) || errors.Is(err, errDataCorrupt)
		}
		out = append(out, h)
	}
	return out
}

// repairStep replaces a voting member that has been unhealthy for longer than the grace
// period while quorum holds: it records the replacement, then removes the member and
// deletes its data as a scale-down would. A later step adds its successor, with the next
// ordinal, as a learner and promotes it; that join goes ahead even while other members are
// unhealthy, as long as quorum holds, and no other replacement starts before it is done. It
// reports whether it took a step.
func (b *Backend) repairStep(ctx context.Context, dir string, st *instanceState, inst *v1beta1.ETCDInstance, observed *backend.Result, health []backend.MemberHealth) (*backend.Result, bool, error) {
	if observed.QuorumLost != "" {
		return nil, false, nil // only a person can recover the cluster
	}
	if st.Replacement != nil {
		return b.stepTowardSpec(ctx, dir, st, inst)
	}
	r, blocked := backend.ChooseReplacement(health, b.opts.MemberRepairGracePeriod)
	if r == nil {
		if blocked != "" {
			observed.Unhealthy += "; not replaced: " + blocked
		}
		backend.NoteRepairOff(observed, health, b.opts.MemberRepairGracePeriod, inst.Name)
		return nil, false, nil
	}
	victim, successor := r.Member.Name, backend.MemberName(inst.Name, st.NextOrdinal)
	st.member(victim).Phase = phaseRemoving
	st.Replacement = &replacementState{Old: victim, New: successor, Why: r.Why}
	if err := st.save(dir); err != nil {
		return nil, true, err
	}
	b.health.Forget(filepath.Join(dir, victim))
	res, err := b.finishRemove(ctx, dir, st, victim)
	events := res.Events
	res.Events = nil
	res.Record(backend.ReasonMemberUnhealthy, "Replacing member %s with a new member %s: %s", victim, successor, r.Why)
	res.Events = append(res.Events, events...)
	res.Step = fmt.Sprintf("replacing member %s with %s", victim, successor)
	return res, true, err
}

// settleReplacement drops the record of a replacement that no longer needs a successor
// (spec.replicas went down meanwhile), once no change is under way.
func (b *Backend) settleReplacement(dir string, st *instanceState, inst *v1beta1.ETCDInstance) error {
	if st.Replacement == nil || len(st.Members) < backend.DesiredReplicas(inst) {
		return nil
	}
	st.Replacement = nil
	return st.save(dir)
}

// takeDied reports whether the server of m stopped on its own since ensureRunning last
// started it, and forgets it.
func (b *Backend) takeDied(dir string, m *memberState) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	key := filepath.Join(dir, m.Name)
	died := b.died[key]
	delete(b.died, key)
	return died
}

// Kill stops the embedded server of one member at once, as a crash would: the member stays
// in its cluster, and the next Sync restarts it from its data (a member that keeps dying is
// replaced once the grace period is over). It reports whether the member ran here. It is
// meant for fault drills and tests.
func (b *Backend) Kill(namespace, name, member string) bool {
	dir, err := instanceDir(b.opts.Dir, namespace, name)
	if err != nil {
		return false
	}
	b.mu.Lock()
	e := b.running[filepath.Join(dir, member)]
	b.mu.Unlock()
	if e == nil {
		return false
	}
	e.HardStop()
	return true
}
