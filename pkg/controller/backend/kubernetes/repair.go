package kubernetes

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
)

// Annotations on the StatefulSet for member repair.
const (
	// annotationMemberVolumes records, by member name, the member ID and the UID of the
	// volume claim of each voting member once it was seen healthy: the same member with a
	// claim of another UID, or none, has lost its data. A new member with the name (after a
	// scale-down and up, a restore) is recorded anew.
	annotationMemberVolumes = "etcdaas.dev/member-volumes"
	// annotationReplacement records a member replacement under way (a replacement in JSON),
	// so that a restarted controller finishes it rather than taking the missing member for
	// a scale-down.
	annotationReplacement = "etcdaas.dev/replacement"
)

// replacement is the replacement of the member with one ordinal. In a StatefulSet the new
// member keeps the ordinal, and so the pod name, DNS name and peer URL, but it is a new etcd
// member: a new member ID, joined as a learner on an empty volume.
type replacement struct {
	// Ordinal is the ordinal of the member replaced.
	Ordinal int `json:"ordinal"`
	// OldID is the etcd member ID replaced.
	OldID string `json:"oldID"`
	// ClaimUID and PodUID are the volume claim and pod of the old member, deleted (only
	// those, never their successors) so that the new member starts empty.
	ClaimUID types.UID `json:"claimUID,omitempty"`
	PodUID   types.UID `json:"podUID,omitempty"`
	// Why says why the member is replaced.
	Why string `json:"why"`
	// DataLost is set when the member lost its volume: it is replaced even if it answers
	// again (it would answer with nothing). Otherwise a member healthy again before its
	// removal is kept.
	DataLost bool `json:"dataLost,omitempty"`
}

// lostVolumeAge is how long, for ChooseReplacement, a member whose volume is lost has been
// unhealthy: always past the grace period, since its data is gone for good.
const lostVolumeAge = 100 * 365 * 24 * time.Hour

// healthKey identifies a member in the health clock: a new member with the same name is
// another member.
func (v *instanceView) healthKey(id uint64) string {
	return healthKeyPrefix(v.inst.Namespace, v.inst.Name) + etcdcluster.FormatID(id)
}

// behindKey identifies in the health clock since when the learner id has been behind its
// leader (noteLearnerBehind): a record of its own, under the instance's prefix.
func (v *instanceView) behindKey(id uint64) string { return v.healthKey(id) + "/behind" }

// healthKeyPrefix starts the health clock's key of every member of the instance namespace/name.
func healthKeyPrefix(namespace, name string) string { return namespace + "/" + name + "/" }

// volumeRecord is the claim a member was seen healthy on.
type volumeRecord struct {
	// Member is the etcd member ID.
	Member string `json:"member"`
	// Claim is the UID of its volume claim.
	Claim types.UID `json:"claim"`
}

// memberVolumes is the recorded claim of each voting member, by member name.
func (v *instanceView) memberVolumes() map[string]volumeRecord {
	out := map[string]volumeRecord{}
	if s := v.sts.Annotations[annotationMemberVolumes]; s != "" {
		_ = json.Unmarshal([]byte(s), &out) // a damaged record is rebuilt
	}
	return out
}

// replacement is the replacement under way, nil when there is none.
func (v *instanceView) replacement() *replacement {
	s, ok := v.sts.Annotations[annotationReplacement]
	if !ok {
		return nil
	}
	r := &replacement{}
	if err := json.Unmarshal([]byte(s), r); err != nil {
		return nil
	}
	return r
}

// setAnnotation sets (or, with value nil, removes) an annotation of the StatefulSet.
func (b *Backend) setAnnotation(ctx context.Context, v *instanceView, key string, value any) error {
	if value == nil {
		if _, ok := v.sts.Annotations[key]; !ok {
			return nil
		}
		return b.updateStatefulSet(ctx, v, func(updated *appsv1.StatefulSet) { delete(updated.Annotations, key) })
	}
	data, err := json.Marshal(value)
	if err != nil {
		return err
	}
	if v.sts.Annotations[key] == string(data) {
		return nil
	}
	return b.updateStatefulSet(ctx, v, func(updated *appsv1.StatefulSet) {
		if updated.Annotations == nil {
			updated.Annotations = map[string]string{}
		}
		updated.Annotations[key] = string(data)
	})
}

// claimName is the volume claim of the member with ordinal o.
func (v *instanceView) claimName(o int) string {
	return dataVolume + "-" + backend.MemberName(v.inst.Name, o)
}

// claim returns the member's volume claim, nil when there is none.
func (b *Backend) claim(ctx context.Context, v *instanceView, o int) (*corev1.PersistentVolumeClaim, error) {
	pvc, err := b.opts.Client.CoreV1().PersistentVolumeClaims(v.inst.Namespace).Get(ctx, v.claimName(o), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return pvc, err
}

// lostVolumes says, by member name, which voting members lost their volume: the claim
// recorded for the member (with the same member ID) is gone, being deleted, or was replaced.
func (b *Backend) lostVolumes(ctx context.Context, v *instanceView, obs *observation) (map[string]string, error) {
	recorded := v.memberVolumes()
	lost := map[string]string{}
	for _, m := range obs.members {
		o := v.ordinal(m, len(obs.members))
		if m.IsLearner || o < 0 {
			continue
		}
		name := backend.MemberName(v.inst.Name, o)
		rec, ok := recorded[name]
		if !ok || rec.Member != m.IDString() {
			continue
		}
		pvc, err := b.claim(ctx, v, o)
		if err != nil {
			return nil, err
		}
		switch {
		case pvc == nil:
			lost[name] = fmt.Sprintf("its volume claim %s is gone", v.claimName(o))
		case pvc.DeletionTimestamp != nil:
			lost[name] = fmt.Sprintf("its volume claim %s is being deleted", v.claimName(o))
		case pvc.UID != rec.Claim:
			lost[name] = fmt.Sprintf("its volume claim %s was replaced by an empty one (UID %s, was %s)", v.claimName(o), pvc.UID, rec.Claim)
		}
	}
	return lost, nil
}

// memberHealth is what repair needs to know about the voting members: their health, with a
// member that lost its volume (lost, from lostVolumes) unhealthy past any grace period. With
// clock, the health clock notes each member's health and says how long the unhealthy ones
// have been; without, only lost members are due.
func (b *Backend) memberHealth(v *instanceView, obs *observation, lost map[string]string, clock bool) []backend.MemberHealth {
	var out []backend.MemberHealth
	for _, m := range obs.members {
		o := v.ordinal(m, len(obs.members))
		if m.IsLearner || o < 0 {
			continue
		}
		name := backend.MemberName(v.inst.Name, o)
		h := backend.MemberHealth{Name: name, Healthy: o < len(obs.statuses) && obs.statuses[o].Healthy}
		switch problem, isLost := lost[name]; {
		case isLost:
			h.Healthy, h.UnhealthyFor, h.Problem, h.DataLost = false, lostVolumeAge, problem, true
		case !clock:
		case h.Healthy:
			b.health.Healthy(v.healthKey(m.ID))
		default:
			h.UnhealthyFor = b.health.Unhealthy(v.healthKey(m.ID))
			if o < len(obs.statuses) {
				h.Problem = fmt.Sprint(obs.statuses[o].Err)
			}
		}
		out = append(out, h)
	}
	return out
}

// lostVolumeStep starts replacing a voting member that lost its volume (lost, from
// lostVolumes), while the others keep quorum. It runs before a version roll's step: a member
// without its data is replaced before the roll restarts another member (or waits for this
// one, which cannot come back with its data). It reports whether it started a replacement.
func (b *Backend) lostVolumeStep(ctx context.Context, v *instanceView, cluster membership, obs *observation, lost map[string]string) (bool, error) {
	if len(lost) == 0 {
		return false, nil
	}
	r, _ := backend.ChooseReplacement(b.memberHealth(v, obs, lost, false), b.opts.MemberRepairGracePeriod)
	if r == nil {
		return false, nil // kept for repairStep, which explains why
	}
	return true, b.startReplacement(ctx, v, cluster, obs, r, lost)
}

// repairStep starts replacing a voting member that lost its volume (lost, from lostVolumes),
// or that has been unhealthy (its pod not Ready, crash looping, Pending) for longer than the
// grace period, while the other healthy members keep quorum. Otherwise it records the volume
// claim of each healthy voting member. It reports whether it started a replacement.
func (b *Backend) repairStep(ctx context.Context, v *instanceView, cluster membership, obs *observation, lost map[string]string) (bool, error) {
	health := b.memberHealth(v, obs, lost, true)
	r, blocked := backend.ChooseReplacement(health, b.opts.MemberRepairGracePeriod)
	if r == nil {
		if blocked != "" {
			obs.result.Unhealthy += "; not replaced: " + blocked
		}
		b.noteRepairOff(v, obs, health)
		return false, b.recordVolumes(ctx, v, obs, health)
	}
	// A roll stopped on this member (stalledOnADownMember) goes on once it is replaced.
	obs.result.Stalled, obs.result.StalledReason = "", ""
	return true, b.startReplacement(ctx, v, cluster, obs, r, lost)
}

// noteRepairOff reports the instance blocked when member repair is off and a voting member
// will not come back by itself (backend.NoteRepairOff). A member that lost its volume but
// answers (an empty pod under the old member ID) is reported unhealthy as well, so that
// Degraded names it and no step is taken past it.
func (b *Backend) noteRepairOff(v *instanceView, obs *observation, health []backend.MemberHealth) {
	backend.NoteRepairOff(obs.result, health, b.opts.MemberRepairGracePeriod, v.inst.Name)
	if obs.result.Blocked == "" {
		return
	}
	var lost []string
	for _, h := range health {
		o := ordinalOf(v.inst, h.Name)
		if h.DataLost && o >= 0 && o < len(obs.statuses) && obs.statuses[o].Healthy {
			lost = append(lost, fmt.Sprintf("%s: its data is lost: %s", h.Name, h.Problem))
		}
	}
	if len(lost) == 0 {
		return
	}
	if obs.result.Unhealthy == "" {
		obs.result.Unhealthy = "unhealthy members: " + strings.Join(lost, "; ")
		return
	}
	obs.result.Unhealthy += "; " + strings.Join(lost, "; ")
}

// startReplacement records the replacement of the member r chose (lost: the members that
// lost their volume) and takes it as far as it can go now.
func (b *Backend) startReplacement(ctx context.Context, v *instanceView, cluster membership, obs *observation, r *backend.Replacement, lost map[string]string) error {
	_, dataLost := lost[r.Member.Name]
	if dataLost {
		r.Why = "its data is lost: " + r.Member.Problem
	}
	o := ordinalOf(v.inst, r.Member.Name)
	i := slices.IndexFunc(obs.members, func(m etcdcluster.Member) bool { return v.ordinal(m, len(obs.members)) == o })
	if o < 0 || i < 0 {
		return fmt.Errorf("member %s to replace is not in the membership", r.Member.Name)
	}
	rep := &replacement{Ordinal: o, OldID: obs.members[i].IDString(), Why: r.Why, DataLost: dataLost}
	return b.beginReplacement(ctx, v, cluster, obs, rep, r.Member.Name)
}

// beginReplacement records rep, the replacement of member name, says so in an Event and takes
// its first step.
func (b *Backend) beginReplacement(ctx context.Context, v *instanceView, cluster membership, obs *observation, rep *replacement, name string) error {
	if err := b.recordReplacement(ctx, v, rep, name); err != nil {
		return err
	}
	obs.result.Record(backend.ReasonMemberUnhealthy, "Replacing member %s (ID %s) with a new member of the same name: %s", name, rep.OldID, rep.Why)
	return b.continueReplacement(ctx, v, cluster, obs, rep)
}

// recordReplacement records rep, the replacement of member name, on the StatefulSet with the
// UIDs of its current volume claim and pod (deleted later by UID, never a newer one of the
// same name), and forgets the claim recorded for the member: the new member's is recorded
// anew once it serves.
func (b *Backend) recordReplacement(ctx context.Context, v *instanceView, rep *replacement, name string) error {
	pvc, err := b.claim(ctx, v, rep.Ordinal)
	if err != nil {
		return err
	}
	if pvc != nil {
		rep.ClaimUID = pvc.UID
	}
	pod, err := b.opts.Client.CoreV1().Pods(v.inst.Namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case err == nil:
		rep.PodUID = pod.UID
	case !apierrors.IsNotFound(err):
		return err
	}
	if err := b.setAnnotation(ctx, v, annotationReplacement, rep); err != nil {
		return err
	}
	volumes := v.memberVolumes()
	delete(volumes, name)
	return b.setAnnotation(ctx, v, annotationMemberVolumes, volumes)
}

// recordVolumes records the claim of every healthy voting member not recorded yet and
// forgets members that are gone.
func (b *Backend) recordVolumes(ctx context.Context, v *instanceView, obs *observation, health []backend.MemberHealth) error {
	recorded := v.memberVolumes()
	ids := map[string]string{}
	for _, m := range obs.members {
		ids[backend.MemberName(v.inst.Name, v.ordinal(m, len(obs.members)))] = m.IDString()
	}
	want := map[string]volumeRecord{}
	for _, h := range health {
		if rec, ok := recorded[h.Name]; ok && rec.Member == ids[h.Name] {
			want[h.Name] = rec
			continue
		}
		if !h.Healthy {
			continue
		}
		o := ordinalOf(v.inst, h.Name)
		if o < 0 {
			return fmt.Errorf("member %s is not one of instance %s", h.Name, v.inst.Name)
		}
		pvc, err := b.claim(ctx, v, o)
		if err != nil {
			return err
		}
		if pvc != nil && pvc.DeletionTimestamp == nil && pvc.Status.Phase == corev1.ClaimBound {
			want[h.Name] = volumeRecord{Member: ids[h.Name], Claim: pvc.UID}
		}
	}
	if len(want) == len(recorded) && func() bool {
		for k, rec := range want {
			if recorded[k] != rec {
				return false
			}
		}
		return true
	}() {
		return nil
	}
	return b.setAnnotation(ctx, v, annotationMemberVolumes, want)
}

// continueReplacement takes the replacement rep as far as it can go now; each part checks
// whether it is done already, so that a replacement interrupted anywhere finishes: remove
// the old member from etcd (leadership moved away first), delete the old member's claim and
// pod so that the StatefulSet creates both anew, empty, add the new member as a learner with
// the same peer URL (the StatefulSet's initial cluster updated for it) once they are gone,
// and promote the learner once its pod serves.
func (b *Backend) continueReplacement(ctx context.Context, v *instanceView, cluster membership, obs *observation, rep *replacement) error {
	obs.result.Step, obs.result.StepReason = fmt.Sprintf("replacing member %s", backend.MemberName(v.inst.Name, rep.Ordinal)), backend.StepAddingMember
	members := obs.members
	i := slices.IndexFunc(members, func(m etcdcluster.Member) bool { return m.IDString() == rep.OldID })
	if i >= 0 && healthyAgain(obs, rep, members[i]) {
		// Healthy again before anything was done (the controller stopped after recording
		// the replacement, or the removal failed): it is kept.
		return b.cancelReplacement(ctx, v, obs, rep)
	}
	if i >= 0 {
		if err := b.removeOld(ctx, v, cluster, obs, rep, members[i]); err != nil {
			return err
		}
		members = slices.Delete(slices.Clone(members), i, i+1)
	}
	if err := b.discardOld(ctx, v, rep); err != nil {
		return err
	}
	learner, added, err := b.replacementMember(ctx, v, cluster, obs, rep, members)
	if err != nil || !added {
		return err
	}
	if learner.IsLearner {
		if promoted, err := b.promoteWhenServing(ctx, v, cluster, obs, rep, learner); err != nil || !promoted {
			return err
		}
	}
	return b.finishReplacement(ctx, v, obs, rep, learner)
}

// healthyAgain reports whether old, the member rep is to replace, is healthy with the ID it
// had, for a replacement whose member did not lose its data.
func healthyAgain(obs *observation, rep *replacement, old etcdcluster.Member) bool {
	return !rep.DataLost && rep.Ordinal < len(obs.statuses) && obs.statuses[rep.Ordinal].Healthy && obs.statuses[rep.Ordinal].MemberID == old.ID
}

// cancelReplacement forgets rep, whose member is kept.
func (b *Backend) cancelReplacement(ctx context.Context, v *instanceView, obs *observation, rep *replacement) error {
	if err := b.setAnnotation(ctx, v, annotationReplacement, nil); err != nil {
		return err
	}
	obs.result.Step = ""
	obs.result.Record(backend.ReasonReplacementCancelled, "Kept member %s (ID %s): it is healthy again, so it is not replaced (it was to be: %s)",
		backend.MemberName(v.inst.Name, rep.Ordinal), rep.OldID, rep.Why)
	return nil
}

// removeOld removes old, the member rep replaces, from etcd, leadership moved away first.
func (b *Backend) removeOld(ctx context.Context, v *instanceView, cluster membership, obs *observation, rep *replacement, old etcdcluster.Member) error {
	if err := cluster.MoveLeaderAway(ctx, old.ID, obs.members, obs.statuses); err != nil {
		return err
	}
	if err := cluster.Remove(ctx, old.ID); err != nil {
		return err
	}
	obs.result.Record(backend.ReasonMemberRemoved, "Removed member %s (ID %s); its volume is deleted with its pod", backend.MemberName(v.inst.Name, rep.Ordinal), rep.OldID)
	b.health.Forget(v.healthKey(old.ID))
	return nil
}

// replacementMember returns the new member of rep among members, the membership without the
// old member: the member with the old member's peer URL, or a learner added with it once the
// old claim and pod are gone. It returns false, and no error, while it waits for them to go.
func (b *Backend) replacementMember(ctx context.Context, v *instanceView, cluster membership, obs *observation, rep *replacement, members []etcdcluster.Member) (etcdcluster.Member, bool, error) {
	name := backend.MemberName(v.inst.Name, rep.Ordinal)
	peer := b.peerURL(v.inst, rep.Ordinal)
	if i := slices.IndexFunc(members, func(m etcdcluster.Member) bool { return slices.Contains(m.PeerURLs, peer) }); i >= 0 {
		return members[i], true, nil
	}
	// The new member is added once the old claim and pod are gone: an empty pod started on
	// the old claim after that would join as the new member and write its log there, and
	// the pod the StatefulSet creates on a new claim would then start the same member with
	// an empty log, which etcd refuses for good (its leader remembers how far it got).
	if gone, err := b.oldGone(ctx, v, rep); err != nil || !gone {
		obs.result.Step = fmt.Sprintf("replacing member %s: waiting for its old pod and volume claim to go", name)
		if err != nil {
			return etcdcluster.Member{}, false, err
		}
		return etcdcluster.Member{}, false, b.recreatePod(ctx, v, rep.Ordinal)
	}
	id, after, err := cluster.AddLearner(ctx, peer)
	if err != nil {
		return etcdcluster.Member{}, false, err
	}
	i := -1
	for j := range after {
		if after[j].ID == id {
			after[j].Name, i = name, j
		}
	}
	obs.result.Record(backend.ReasonMemberAdded, "Added member %s (ID %s) as a learner, on a new volume", name, etcdcluster.FormatID(id))
	if err := b.setMembers(ctx, v, after); err != nil {
		return etcdcluster.Member{}, false, err
	}
	if i < 0 {
		return etcdcluster.Member{}, false, fmt.Errorf("member %s was added but is not in the membership", name)
	}
	return after[i], true, nil
}

// promoteWhenServing promotes learner, the new member of rep, once its pod serves. It returns
// false, and no error, while it waits for the pod, or for the learner to catch up with its
// leader: past backend.JoinDeadline of either (each counted by the health clock, as for a
// scale-up's learner) the instance is reported blocked on it (MemberNotJoining), and each
// later look still waits for it and tries the promotion.
func (b *Backend) promoteWhenServing(ctx context.Context, v *instanceView, cluster membership, obs *observation, rep *replacement, learner etcdcluster.Member) (bool, error) {
	name := backend.MemberName(v.inst.Name, rep.Ordinal)
	st := etcdcluster.EndpointStatus{}
	if rep.Ordinal < len(obs.statuses) {
		st = obs.statuses[rep.Ordinal]
	}
	if !st.Healthy || st.MemberID != learner.ID {
		obs.result.Step = fmt.Sprintf("replacing member %s: waiting for its new pod", name)
		if err := b.recreatePod(ctx, v, rep.Ordinal); err != nil {
			return false, err
		}
		if err := b.renewLearnerPod(ctx, v, rep.Ordinal); err != nil {
			return false, err
		}
		waited := b.health.Unhealthy(v.healthKey(learner.ID))
		backend.NoteSuccessorNotJoining(obs.result, successorName(name, learner), replacedName(name, rep), "its pod", "its node, its image, its volume", waited, backend.JoinDeadline)
		return false, nil
	}
	// It serves: should it stop, its time without serving counts from then.
	b.health.Healthy(v.healthKey(learner.ID))
	if err := cluster.Promote(ctx, learner.ID); err != nil {
		if behindLeader(ctx, err) {
			obs.result.Step = fmt.Sprintf("replacing member %s: waiting for its new member to catch up with the leader", name)
			obs.result.StepWait = backend.CatchUpInterval
			behind := b.health.Unhealthy(v.behindKey(learner.ID))
			backend.NoteSuccessorNotCatchingUp(obs.result, successorName(name, learner), replacedName(name, rep), v.learnerLag(obs, rep.Ordinal), behind, backend.JoinDeadline)
			return false, nil
		}
		b.promotionUnanswered(v, learner.ID)
		return false, err
	}
	// Its wait as a learner does not count against the voting member it now is (repair).
	b.forgetLearner(v, learner.ID)
	markPromoted(obs.result, name)
	obs.result.Record(backend.ReasonMemberPromoted, "Promoted member %s (ID %s) to a voting member", name, learner.IDString())
	return true, nil
}

// successorName names learner, the new member of the name of a member replaced, by its ID
// as well: "db-1 (ID c9)".
func successorName(name string, learner etcdcluster.Member) string {
	return fmt.Sprintf("%s (ID %s)", name, learner.IDString())
}

// replacedName names the member rep replaces, name, by its ID as well: "member db-1 (ID 65)".
func replacedName(name string, rep *replacement) string {
	return fmt.Sprintf("member %s (ID %s)", name, rep.OldID)
}

// finishReplacement forgets rep, whose new member, learner when it was added, now votes.
func (b *Backend) finishReplacement(ctx context.Context, v *instanceView, obs *observation, rep *replacement, learner etcdcluster.Member) error {
	if err := b.setAnnotation(ctx, v, annotationReplacement, nil); err != nil {
		return err
	}
	name := backend.MemberName(v.inst.Name, rep.Ordinal)
	obs.result.Step = fmt.Sprintf("replaced member %s", name)
	obs.result.Record(backend.ReasonMemberReplaced, "Replaced member %s (ID %s) with a new member %s (ID %s) on a new volume, in sync and voting: %s",
		name, rep.OldID, name, learner.IDString(), rep.Why)
	return nil
}

// discardOld deletes the old member's claim and pod, and only those (UID preconditions): the
// StatefulSet then creates a new pod with a new, empty claim.
func (b *Backend) discardOld(ctx context.Context, v *instanceView, rep *replacement) error {
	core := b.opts.Client.CoreV1()
	ignore := func(err error) error {
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil // gone already, or a successor with the same name
		}
		return err
	}
	if rep.ClaimUID != "" {
		opts := metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &rep.ClaimUID}}
		if err := ignore(core.PersistentVolumeClaims(v.inst.Namespace).Delete(ctx, v.claimName(rep.Ordinal), opts)); err != nil {
			return err
		}
	}
	if rep.PodUID != "" {
		opts := metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &rep.PodUID}}
		if err := ignore(core.Pods(v.inst.Namespace).Delete(ctx, backend.MemberName(v.inst.Name, rep.Ordinal), opts)); err != nil {
			return err
		}
	}
	return nil
}

// oldGone reports whether the replaced member's claim and pod (those of rep, by UID) are gone.
func (b *Backend) oldGone(ctx context.Context, v *instanceView, rep *replacement) (bool, error) {
	if rep.ClaimUID != "" {
		pvc, err := b.claim(ctx, v, rep.Ordinal)
		if err != nil || (pvc != nil && pvc.UID == rep.ClaimUID) {
			return false, err
		}
	}
	if rep.PodUID != "" {
		pod, err := b.opts.Client.CoreV1().Pods(v.inst.Namespace).Get(ctx, backend.MemberName(v.inst.Name, rep.Ordinal), metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return false, err
		}
		if err == nil && pod.UID == rep.PodUID {
			return false, nil
		}
	}
	return true, nil
}

// recreatePod deletes the member's pod when it cannot start on a new, empty claim: it is
// Pending without a claim (created while its old claim was being deleted), or it holds a claim
// that is being deleted (the StatefulSet recreated it before the old claim was gone, or, after
// a scale-down and up, kept the removed member's pod, so the claim stays until the pod goes).
// The StatefulSet then creates it again with a new claim. The pod is not a working member, so
// it goes at once.
func (b *Backend) recreatePod(ctx context.Context, v *instanceView, o int) error {
	pods := b.opts.Client.CoreV1().Pods(v.inst.Namespace)
	pod, err := pods.Get(ctx, backend.MemberName(v.inst.Name, o), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil || pod.DeletionTimestamp != nil {
		return err
	}
	pvc, err := b.claim(ctx, v, o)
	if err != nil {
		return err
	}
	orphaned := pvc == nil && pod.Status.Phase == corev1.PodPending
	if !orphaned && (pvc == nil || pvc.DeletionTimestamp == nil) {
		return nil
	}
	err = pods.Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0), Preconditions: &metav1.Preconditions{UID: &pod.UID}})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// missingOrdinal is the lowest ordinal without a member among members, the membership in
// ordinal order.
func (v *instanceView) missingOrdinal(members []etcdcluster.Member) int {
	o := 0
	for _, m := range members {
		if v.ordinal(m, len(members)) == o {
			o++
		}
	}
	return o
}

// replaceMissing starts replacing the member with ordinal o, which has a pod but is no longer
// in the etcd membership (someone removed it): its pod and volume claim are deleted and a new
// member joins with its name, as for any replacement.
func (b *Backend) replaceMissing(ctx context.Context, v *instanceView, cluster membership, obs *observation, o int) error {
	name := backend.MemberName(v.inst.Name, o)
	// The member's ID, as recorded with its volume: it is gone from the membership.
	rep := &replacement{Ordinal: o, OldID: "unknown", Why: "it is no longer in the etcd membership (removed outside this controller)", DataLost: true}
	if rec, ok := v.memberVolumes()[name]; ok {
		rep.OldID = rec.Member
	}
	return b.beginReplacement(ctx, v, cluster, obs, rep, name)
}
