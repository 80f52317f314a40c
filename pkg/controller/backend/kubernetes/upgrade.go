package kubernetes

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
)

// DefaultUpgradeStepTimeout is how long a member a roll restarted has to become healthy on
// its new image and resources before the roll stops with UpgradeFailed.
const DefaultUpgradeStepTimeout = 5 * time.Minute

// annotationRollStep on the StatefulSet records the member a roll restarted last (a JSON
// rollStep). It is written before the member's pod is deleted and removed once the member is
// healthy on its new image and resources, so that every later Sync, in this controller or
// the next, checks that member before restarting another.
const annotationRollStep = "etcdaas.dev/upgrade-step"

// rollStep is the restart of one member by a roll.
type rollStep struct {
	// Member is the member whose pod was deleted.
	Member string `json:"member"`
	// From is the etcd version the member reported before its restart.
	From string `json:"from,omitempty"`
	// Image is the image its new pod runs.
	Image string `json:"image"`
	// Resources is the record (resourcesRecord) of the resources its new pod runs with;
	// empty in a step recorded before resources were, which was made with the defaults.
	Resources string `json:"resources,omitempty"`
	// Trust is the record (trustRecord) of the CAs its new pod trusts; empty without TLS,
	// or in a step recorded before the controller kept the record.
	Trust string `json:"trust,omitempty"`
	// Leader is set when the member led the cluster (leadership was moved away first).
	Leader bool `json:"leader,omitempty"`
	// Down is set when the member did not serve when it was restarted: should it not come
	// back, the roll did not take it down, and repair may replace it (stalledOnADownMember).
	Down bool `json:"down,omitempty"`
	// Started is when its pod was deleted.
	Started metav1.Time `json:"started"`
	// Failed is set once the step has been reported as failed (Event UpgradeFailed), so
	// that it is reported once.
	Failed bool `json:"failed,omitempty"`
}

// roll is what a roll works from: the instance's view (the image and resources every member
// must run with), the release every member must run, the members' pods by name and the
// member the roll restarted last, if it is not done.
type roll struct {
	v       *instanceView
	obs     *observation
	release string
	pods    map[string]*corev1.Pod
	step    *rollStep
}

// rollMembers rolls the members onto the image of spec.version and the resources of
// spec.resources, one member at a time: it records the restart of a member, deletes its pod
// (the StatefulSet's OnDelete strategy recreates it from the updated template on the same
// volume) and restarts the next only once that member is healthy on the new image and
// resources and reports its release, and every voting member is healthy. A member is
// outdated when its pod was made from an older template: another image, or other resources
// than the instance's record (annotationPodResources), or it trusts other CAs than ca.crt
// of the TLS Secret holds (annotationTrustedCA: etcd reads that file at start only). A
// version change, a resources change and a CA added, alone or together, are one roll. Followers go first, the leader last after moving
// leadership away. A member that does not become healthy within the step timeout stops the
// roll (Stalled, UpgradeFailed) until it does or the spec changes. It reports whether it
// took or awaits a roll step, in which case no other step is taken.
func (b *Backend) rollMembers(ctx context.Context, v *instanceView, cluster membership, obs *observation) (bool, error) {
	if err := b.setTemplate(ctx, v); err != nil {
		return true, err
	}
	r, err := b.observeRoll(ctx, v, obs)
	if err != nil {
		return true, err
	}
	if r.step != nil {
		done, err := b.checkRollStep(ctx, r)
		if err != nil {
			return true, err
		}
		if !done {
			return !r.stalledOnADownMember(), nil
		}
	}
	outdated := r.outdated()
	if len(outdated) == 0 {
		return false, nil
	}
	next, ok := r.next(outdated)
	if !ok {
		// Another member is unhealthy: the roll waits, and other steps (or a person) act.
		return false, nil
	}
	if name := v.terminatingMember(obs, ""); name != "" {
		obs.result.StepReason = backend.StepUpgrading
		obs.result.Step = r.progress(len(outdated)) + fmt.Sprintf("; waiting for the pod of member %s, being deleted, to come back", name)
		return true, nil
	}
	if !templateObserved(v.sts) {
		obs.result.StepReason = backend.StepUpgrading
		obs.result.Step = r.progress(len(outdated)) + "; waiting for the StatefulSet controller to take the new pod template"
		return true, nil
	}
	return true, b.restartMember(ctx, r, cluster, next, len(outdated))
}

// stalledOnADownMember reports whether the roll stopped (UpgradeFailed) on a member that did
// not serve when the roll restarted it, and still does not: the roll did not take it down, so
// repair may replace it, as it would have without the roll (its successor is made from the new
// template), rather than wait for it as long as it is down. Every other step still waits: the
// member is unhealthy.
func (r *roll) stalledOnADownMember() bool {
	ms, _ := r.member(r.step.Member)
	return r.step.Down && r.obs.result.Stalled != "" && !ms.Ready
}

// templateObserved reports whether the StatefulSet controller has seen the StatefulSet's
// current spec: a pod deleted before it has is recreated from the template before.
func templateObserved(sts *appsv1.StatefulSet) bool {
	return sts.Status.ObservedGeneration >= sts.Generation
}

// observeRoll reads the instance's member pods and the recorded roll step.
func (b *Backend) observeRoll(ctx context.Context, v *instanceView, obs *observation) (*roll, error) {
	release := "" // the release of the template's image, kept for a refused spec.version, is not known
	if v.refusal == nil {
		var err error
		if release, err = b.Release(v.inst); err != nil {
			return nil, err
		}
	}
	r := &roll{v: v, obs: obs, release: release, pods: map[string]*corev1.Pod{}}
	pods, err := b.opts.Client.CoreV1().Pods(v.inst.Namespace).List(ctx, metav1.ListOptions{LabelSelector: etcdaas.MemberSelector(v.inst.Name)})
	if err != nil {
		return nil, err
	}
	for i := range pods.Items {
		r.pods[pods.Items[i].Name] = &pods.Items[i]
	}
	v.pods = r.pods
	if s, ok := v.sts.Annotations[annotationRollStep]; ok {
		r.step = &rollStep{}
		if err := json.Unmarshal([]byte(s), r.step); err != nil || r.step.Member == "" {
			// Not written by this controller (edited by hand?): the roll goes on from what
			// the members and pods show, gated as always.
			klog.InfoS("Dropping an unreadable upgrade step record", "statefulSet", klog.KObj(v.sts), "annotation", annotationRollStep, "err", err)
			r.step = nil
			return r, b.writeRollStep(ctx, v, nil)
		}
	}
	return r, nil
}

// setTemplate makes new member pods run the image of spec.version with the resources of
// spec.resources (and their record), recording the CAs they trust. Running pods keep theirs
// (OnDelete): the roll restarts them one at a time.
func (b *Backend) setTemplate(ctx context.Context, v *instanceView) error {
	resources, record := v.resources, v.resourcesRecord
	template := &v.sts.Spec.Template
	i := slices.IndexFunc(template.Spec.Containers, func(c corev1.Container) bool { return c.Name == "etcd" })
	if i < 0 || (template.Spec.Containers[i].Image == v.image && template.Annotations[annotationPodResources] == record &&
		template.Annotations[annotationTrustedCA] == v.trust.record &&
		apiequality.Semantic.DeepEqual(template.Spec.Containers[i].Resources, resources)) {
		return nil
	}
	return b.updateStatefulSet(ctx, v, func(updated *appsv1.StatefulSet) {
		for j := range updated.Spec.Template.Spec.Containers {
			if c := &updated.Spec.Template.Spec.Containers[j]; c.Name == "etcd" {
				c.Image, c.Resources = v.image, *resources.DeepCopy()
			}
		}
		if updated.Spec.Template.Annotations == nil {
			updated.Spec.Template.Annotations = map[string]string{}
		}
		updated.Spec.Template.Annotations[annotationPodResources] = record
		if v.trust.record != "" {
			updated.Spec.Template.Annotations[annotationTrustedCA] = v.trust.record
		}
	})
}

// podOutdated reports whether a member pod was made from an older template than the roll's:
// it runs another image, or other resources, or trusts other CAs.
func (r *roll) podOutdated(pod *corev1.Pod) bool { return r.v.podOutdated(pod) }

// podOutdated reports whether a member pod was made from an older template than the view's.
func (v *instanceView) podOutdated(pod *corev1.Pod) bool {
	return etcdImage(&pod.Spec) != v.image || podResourcesRecord(pod) != v.resourcesRecord || !v.trust.accepts(podTrustRecord(pod))
}

// renewLearnerPod makes the pod of the learner with ordinal o, which does not serve, anew when
// it was made from an older template than the spec's (its image cannot be pulled, and
// spec.version was set back, say): the template is brought up to date first (the roll, which
// would do it, waits for the learner), and the pod deleted once the StatefulSet controller took
// the template. The StatefulSet's OnDelete strategy would otherwise keep the pod, and the
// learner waited for, for ever. A learner that does not serve loses nothing; its volume stays.
func (b *Backend) renewLearnerPod(ctx context.Context, v *instanceView, o int) error {
	if err := b.setTemplate(ctx, v); err != nil {
		return err
	}
	pod, err := b.opts.Client.CoreV1().Pods(v.inst.Namespace).Get(ctx, backend.MemberName(v.inst.Name, o), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil || pod.DeletionTimestamp != nil || !v.podOutdated(pod) || !templateObserved(v.sts) {
		return err
	}
	return b.deletePod(ctx, pod)
}

// target says what the roll moves the members to, for people.
func (r *roll) target() string {
	if r.release == "" {
		return fmt.Sprintf("image %s with %s", r.v.image, describeResources(r.v.resources))
	}
	return fmt.Sprintf("etcd %s (image %s) with %s", r.release, r.v.image, describeResources(r.v.resources))
}

// stepTarget reports whether step restarted its member toward what the spec asks for now.
func (r *roll) stepTarget(step *rollStep) bool { return r.v.stepTarget(step) }

// stepTarget reports whether step restarted its member toward the view's image, resources
// and CAs.
func (v *instanceView) stepTarget(step *rollStep) bool {
	return step.Image == v.image && stepResources(step) == v.resourcesRecord && v.trust.accepts(step.Trust)
}

// stepResources is the resources record of step (a step recorded before resources were
// records none: its pod was made with the defaults).
func stepResources(step *rollStep) string {
	if step.Resources == "" {
		return defaultResourcesRecord
	}
	return step.Resources
}

// etcdImage is the image of the etcd container of a member pod, or of the StatefulSet's pod
// template, "" when it has none.
func etcdImage(spec *corev1.PodSpec) string {
	for _, c := range spec.Containers {
		if c.Name == "etcd" {
			return c.Image
		}
	}
	return ""
}

// member returns the status of the member named name and its index in the observation.
func (r *roll) member(name string) (v1beta1.MemberStatus, int) {
	for i, m := range r.obs.result.Members {
		if m.Name == name {
			return m, i
		}
	}
	return v1beta1.MemberStatus{Name: name}, -1
}

// upToDate reports whether member name runs the roll's image with its resources, is healthy,
// reports the roll's release (when the release is known) and its pod is Ready. A healthy
// voting member has served a linearizable read, so it has applied every entry the cluster
// had committed when it asked: it is caught up.
func (r *roll) upToDate(name string) (bool, string) {
	pod := r.pods[name]
	ms, _ := r.member(name)
	switch {
	case pod == nil || pod.DeletionTimestamp != nil:
		return false, "its pod is being recreated"
	case etcdImage(&pod.Spec) != r.v.image:
		return false, fmt.Sprintf("its pod runs %s", etcdImage(&pod.Spec))
	case podResourcesRecord(pod) != r.v.resourcesRecord:
		return false, fmt.Sprintf("its pod has %s", describeRecord(podResourcesRecord(pod)))
	case !r.v.trust.accepts(podTrustRecord(pod)):
		return false, fmt.Sprintf("its pod does not trust every CA of Secret %s", TLSSecretName(r.v.inst))
	case !ms.Ready:
		return false, "it is not healthy yet"
	case r.release != "" && ms.Version != r.release:
		return false, fmt.Sprintf("it reports etcd %s", ms.Version)
	case !podReady(pod):
		// The member serves before the kubelet's readiness probe says so: until then its
		// Services do not route to it, and the PodDisruptionBudget counts it as down.
		return false, "its pod is not Ready yet"
	}
	return true, ""
}

// outdated are the indexes (in the observation) of the members whose pods were made from
// an older template than the roll's (podOutdated).
func (r *roll) outdated() []int {
	var out []int
	for i, m := range r.obs.result.Members {
		if pod := r.pods[m.Name]; pod != nil && pod.DeletionTimestamp == nil && r.podOutdated(pod) {
			out = append(out, i)
		}
	}
	return out
}

// next chooses the outdated member to restart, or false while the roll must wait: every
// voting member must be healthy, except one outdated member that is not (it serves nothing,
// and restarting it is what may bring it back), which then goes first. Otherwise followers
// go first, highest ordinal first, and the leader last.
func (r *roll) next(outdated []int) (int, bool) {
	members := r.obs.result.Members
	var unhealthy []int
	for i, m := range members {
		if !m.Ready {
			unhealthy = append(unhealthy, i)
		}
	}
	switch {
	case len(unhealthy) == 1 && slices.Contains(outdated, unhealthy[0]):
		return unhealthy[0], true
	case len(unhealthy) > 0:
		return 0, false
	}
	order := slices.Clone(outdated)
	slices.SortStableFunc(order, func(a, b int) int {
		if members[a].Leader != members[b].Leader {
			if members[a].Leader {
				return 1
			}
			return -1
		}
		return b - a
	})
	return order[0], true
}

// votingMembers counts the voting members.
func (r *roll) votingMembers() int {
	n := 0
	for _, m := range r.obs.members {
		if !m.IsLearner {
			n++
		}
	}
	return n
}

// progress describes the roll for the Progressing condition.
func (r *roll) progress(outdated int) string {
	total := len(r.obs.result.Members)
	return fmt.Sprintf("rolling the members to %s: %d of %d members rolled", r.target(), total-outdated, total)
}

// restartMember restarts member index i of the observation on the roll's image and
// resources: leadership moves away from it first, the step is recorded, then its pod is
// deleted.
func (b *Backend) restartMember(ctx context.Context, r *roll, cluster membership, i, outdated int) error {
	res, ms := r.obs.result, r.obs.result.Members[i]
	res.StepReason = backend.StepUpgrading
	res.Step = fmt.Sprintf("%s; restarting member %s", r.progress(outdated), ms.Name)
	if ms.Leader && r.votingMembers() > 1 {
		m := r.obs.members[i]
		if err := cluster.MoveLeaderAway(ctx, m.ID, r.obs.members, r.obs.statuses); err != nil {
			return fmt.Errorf("moving leadership away from %s before restarting it: %w", ms.Name, err)
		}
	}
	pod := r.pods[ms.Name]
	step := &rollStep{Member: ms.Name, From: ms.Version, Image: r.v.image, Resources: r.v.resourcesRecord, Trust: r.v.trust.record, Leader: ms.Leader, Down: !ms.Ready, Started: metav1.NewTime(b.now())}
	if err := b.writeRollStep(ctx, r.v, step); err != nil {
		return err
	}
	return b.deletePod(ctx, pod)
}

// deletePod deletes a member pod, only that very pod (not one the StatefulSet recreated).
func (b *Backend) deletePod(ctx context.Context, pod *corev1.Pod) error {
	err := b.opts.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(pod.UID))})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// checkRollStep follows the member the roll restarted last. It reports done once the member
// is up to date (recording MemberUpgraded and clearing the step); until then the step is
// under way, and past the step timeout it has failed: the roll stops, Stalled says which
// member and why, and UpgradeFailed is recorded once.
func (b *Backend) checkRollStep(ctx context.Context, r *roll) (bool, error) {
	step, res := r.step, r.obs.result
	if !r.stepTarget(step) {
		// spec.version or spec.resources changed since: the roll starts over toward them.
		return true, b.writeRollStep(ctx, r.v, nil)
	}
	if pod := r.pods[step.Member]; pod != nil && pod.DeletionTimestamp == nil && r.podOutdated(pod) && templateObserved(r.v.sts) {
		// Recorded, but the controller stopped before deleting the pod; or the StatefulSet
		// controller, not having seen the new template yet, recreated it from the old one.
		res.StepReason, res.Step = backend.StepUpgrading, fmt.Sprintf("%s; restarting member %s", r.progress(len(r.outdated())), step.Member)
		return false, b.deletePod(ctx, pod)
	}
	ok, why := r.upToDate(step.Member)
	if ok {
		ms, _ := r.member(step.Member)
		from := step.From
		if from == "" {
			from = "an unknown version"
		}
		member := step.Member
		if step.Leader {
			member += " (the leader; leadership moved away first)"
		}
		trusting := ""
		if !r.v.trust.single && r.v.trust.record != "" {
			trusting = fmt.Sprintf(", trusting every CA of Secret %s", TLSSecretName(r.v.inst))
		}
		// Recorded once the step's end is written: a look that fails to write it leaves the
		// step to the next, which finds it as it was and records it then, once.
		if err := b.writeRollStep(ctx, r.v, nil); err != nil {
			return true, err
		}
		res.Record(backend.ReasonMemberUpgraded, "Member %s runs etcd %s (was %s) on image %s with %s%s", member, ms.Version, from, r.v.image, describeResources(r.v.resources), trusting)
		return true, nil
	}
	res.StepReason = backend.StepUpgrading
	res.Step = fmt.Sprintf("%s; waiting for member %s: %s", r.progress(len(r.outdated())), step.Member, why)
	return false, b.failStepAfterTimeout(ctx, r.v, step, res, why)
}

// failStepAfterTimeout stops the roll once the member of step has not been up to date
// (because of why) for longer than the step timeout: Stalled says which member and why, and
// UpgradeFailed is recorded once.
func (b *Backend) failStepAfterTimeout(ctx context.Context, v *instanceView, step *rollStep, res *backend.Result, why string) error {
	waited := b.now().Sub(step.Started.Time)
	if waited < b.opts.UpgradeStepTimeout {
		return nil
	}
	if problem, err := b.memberPodProblem(ctx, v.inst, ordinalOf(v.inst, step.Member)); err == nil && problem != "" {
		why += ": " + problem
	}
	res.StalledReason = string(backend.ReasonUpgradeFailed)
	res.Stalled = fmt.Sprintf("The roll to image %s with %s stopped: member %s is not up to date %s after its restart: %s; no other member is restarted until it is, or spec.version or spec.resources changes",
		step.Image, describeRecord(stepResources(step)), step.Member, waited.Round(time.Second), why)
	if step.Failed {
		return nil
	}
	// Recorded once the failure is written (step.Failed), so that it is recorded once.
	failed := *step
	failed.Failed = true
	if err := b.writeRollStep(ctx, v, &failed); err != nil {
		return err
	}
	res.Record(backend.ReasonUpgradeFailed, "%s", res.Stalled)
	return nil
}

// rollWithoutReadyMember follows a roll step while no member pod is ready, which is how a
// single-member instance upgrades (its only member restarts): the step under way is the
// upgrade, the phase stays Running, and the step fails after the step timeout as any other.
// Without a recorded step (or one for an image spec.version no longer asks for) it changes
// nothing.
func (b *Backend) rollWithoutReadyMember(ctx context.Context, v *instanceView, res *backend.Result) error {
	s, ok := v.sts.Annotations[annotationRollStep]
	step := &rollStep{}
	if !ok || json.Unmarshal([]byte(s), step) != nil || !v.stepTarget(step) {
		return nil
	}
	res.StepReason = backend.StepUpgrading
	res.Step = fmt.Sprintf("rolling the members to image %s with %s; waiting for member %s to start", v.image, describeRecord(stepResources(step)), step.Member)
	return b.failStepAfterTimeout(ctx, v, step, res, "no member is ready")
}

// ordinalOf is the ordinal in a member name of the instance, -1 for another name.
func ordinalOf(inst *v1beta1.ETCDInstance, member string) int {
	suffix, ok := strings.CutPrefix(member, inst.Name+"-")
	o, err := strconv.Atoi(suffix)
	if !ok || err != nil || o < 0 {
		return -1
	}
	return o
}

// writeRollStep records step on the StatefulSet, or removes the record when step is nil.
func (b *Backend) writeRollStep(ctx context.Context, v *instanceView, step *rollStep) error {
	if step == nil {
		// Not step itself: a nil *rollStep in an interface is not nil.
		return b.setAnnotation(ctx, v, annotationRollStep, nil)
	}
	return b.setAnnotation(ctx, v, annotationRollStep, step)
}
