package kubernetes

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
)

// How a cluster that lost quorum is rebuilt (the recover subresource), within the
// StatefulSet: member 0 always starts the new cluster, because the StatefulSet starts its pods
// in order. Its seed init container (the one restores use, SeedCommand) rebuilds its data from
// the survivor — its own database when member 0 is the survivor, else a snapshot streamed from
// the survivor, which a member serves without quorum — as a new one-member cluster (new
// cluster token, revision raised above what any member reported), and no S3 destination is
// involved. The plan is the seed recorded on the StatefulSet (annotationSeed, with Recover
// set), written before anything changes, so that another controller resumes it:
//
//  1. The members that are neither member 0 nor the survivor stop, and their volumes are
//     deleted, so that they never form a quorum of the old cluster again; the members above
//     the survivor go with the StatefulSet's replicas.
//  2. Member 0 restarts through the seed init container and serves the new cluster.
//  3. The StatefulSet shrinks to member 0 (Seeded); the remaining pods of the old cluster,
//     the survivor's among them, stop and their volumes are deleted. The seed ends, and the
//     ordinary steps add members back as learners, one at a time, up to spec.replicas.

// Recover implements backend.Backend. It checks that quorum is lost, chooses the survivor,
// records the plan on the StatefulSet and takes its first step; a recovery recorded already
// is resumed.
func (b *Backend) Recover(ctx context.Context, inst *v1beta1.ETCDInstance, req backend.RecoverRequest) (*backend.Result, error) {
	v, err := b.recoveryView(ctx, inst)
	if err != nil {
		return nil, err
	}
	s, err := seedOf(v.sts.Annotations)
	if err != nil {
		return nil, err
	}
	member := req.Member
	switch restore, rerr := restoreRequestOf(v.sts.Annotations); {
	case req.ID != "" && v.sts.Annotations[annotationLastRecovery] == req.ID:
		return nil, fmt.Errorf("%w: recover request %s", backend.ErrRecoveredAlready, req.ID)
	case s != nil && s.Recover != "" && member != "" && member != s.Recover:
		return nil, fmt.Errorf("%w: a recovery from member %s is under way already", backend.ErrCannotRecover, s.Recover)
	case s != nil && s.Recover != "":
		return b.continueRecovery(ctx, v, s)
	case s != nil || restore != nil || rerr != nil:
		return nil, fmt.Errorf("%w: a restore of the instance is under way", backend.ErrCannotRecover)
	case b.opts.ToolsImage == "":
		return nil, fmt.Errorf("%w: this controller does not know the etcdaas image that rebuilds members (--tools-image)", backend.ErrCannotRecover)
	}
	cluster, err := b.connectView(v)
	if err != nil {
		return nil, err
	}
	defer func() { _ = cluster.Close() }()
	statuses := cluster.Statuses(ctx)
	res := &backend.Result{Members: v.answeringMembers(statuses)}
	if _, err := cluster.MemberList(ctx); err == nil {
		return res, fmt.Errorf("%w: quorum is not lost: the members list their membership", backend.ErrCannotRecover)
	}
	if quorumLoss(res.Members) == "" {
		return res, fmt.Errorf("%w: quorum is not lost: a majority of the voting members answer", backend.ErrCannotRecover)
	}
	survivor, err := v.chooseSurvivor(statuses, member)
	if err != nil {
		return res, err
	}
	if survivor == 0 && statuses[0].MemberID == 0 {
		if err := b.checkOwnData(ctx, v); err != nil {
			return res, err
		}
	}
	s = b.recoveryPlan(v, statuses, survivor)
	s.RecoverRequest = req.ID
	if err := b.startRecovery(ctx, v, s, survivor); err != nil {
		return res, err
	}
	return b.continueRecovery(ctx, v, s)
}

// recoveryView is the view a recovery works from; it changes nothing.
func (b *Backend) recoveryView(ctx context.Context, inst *v1beta1.ETCDInstance) (*instanceView, error) {
	image, refusal, err := b.memberImage(ctx, inst)
	if err != nil {
		return nil, err
	}
	sts, err := b.opts.Client.AppsV1().StatefulSets(inst.Namespace).Get(ctx, statefulSetName(inst), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("%w: the instance has no members", backend.ErrCannotRecover)
	}
	if err != nil {
		return nil, err
	}
	if !metav1.IsControlledBy(sts, inst) {
		return nil, fmt.Errorf("%w: StatefulSet %s/%s is not owned by this instance", backend.ErrCannotRecover, sts.Namespace, sts.Name)
	}
	v := b.newInstanceView(inst, image)
	v.sts, v.refusal = sts, refusal
	if inst.Spec.TLSEnabled() {
		secret, err := b.opts.Client.CoreV1().Secrets(inst.Namespace).Get(ctx, TLSSecretName(inst), metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		v.setTLS(secret.Data)
	}
	return v, nil
}

// chooseSurvivor returns the ordinal of the member to rebuild from: member when named, else
// the voting member that answers with the highest revision (then applied index, then lowest
// ordinal). A member restarted after quorum was lost serves no client until it rejoins a
// quorum, so it cannot be asked; member 0 can still be named, as it is rebuilt from its own
// database.
func (v *instanceView) chooseSurvivor(statuses []etcdcluster.EndpointStatus, member string) (int, error) {
	first := backend.MemberName(v.inst.Name, 0)
	if member != "" {
		o := ordinalOf(v.inst, member)
		if o < 0 || o >= v.replicas() || o >= len(statuses) {
			return 0, fmt.Errorf("%w: %s is not a member with a pod", backend.ErrCannotRecover, member)
		}
		st := statuses[o]
		switch {
		case st.MemberID != 0 && st.IsLearner:
			return 0, fmt.Errorf("%w: member %s is a learner, which may lack committed data", backend.ErrCannotRecover, member)
		case st.MemberID != 0, o == 0:
			return o, nil
		}
		return 0, fmt.Errorf("%w: member %s does not answer (%v); only member %s can be rebuilt from without answering, from its own database",
			backend.ErrCannotRecover, member, st.Err, first)
	}
	best := -1
	for o, st := range statuses {
		if st.MemberID == 0 || st.IsLearner {
			continue
		}
		if cur := statuses[max(best, 0)]; best < 0 || st.Revision > cur.Revision || (st.Revision == cur.Revision && st.RaftAppliedIndex > cur.RaftAppliedIndex) {
			best = o
		}
	}
	if best < 0 {
		return 0, fmt.Errorf("%w: no voting member answers (a member restarted after quorum was lost serves no client until it rejoins a quorum); "+
			"name member %s to rebuild the cluster from its own database, or restore a backup", backend.ErrCannotRecover, first)
	}
	return best, nil
}

// checkOwnData refuses to rebuild the cluster from member 0's own database, member 0 not
// answering, when the StatefulSet records that its volume does not hold the cluster's data:
// member 0 is being replaced (it is a learner on a new volume, or not a member yet), or its
// volume claim is not the one it was seen healthy on. The other members' volumes are deleted
// before member 0's database is read, so theirs would be lost for it.
func (b *Backend) checkOwnData(ctx context.Context, v *instanceView) error {
	first := backend.MemberName(v.inst.Name, 0)
	why := ""
	if rep := v.replacement(); rep != nil && rep.Ordinal == 0 {
		why = fmt.Sprintf("is being replaced (%s): it runs on a new volume as a learner, which may lack committed data", rep.Why)
	} else if rec, ok := v.memberVolumes()[first]; ok {
		pvc, err := b.claim(ctx, v, 0)
		switch {
		case err != nil:
			return err
		case pvc == nil || pvc.DeletionTimestamp != nil:
			why = fmt.Sprintf("lost its volume claim %s", v.claimName(0))
		case pvc.UID != rec.Claim:
			why = fmt.Sprintf("has a new volume claim %s (UID %s, was %s), without the cluster's data", v.claimName(0), pvc.UID, rec.Claim)
		}
	}
	if why == "" {
		return nil
	}
	return fmt.Errorf("%w: member %s does not answer and %s; name a voting member that answers, or restore a backup",
		backend.ErrCannotRecover, first, why)
}

// recoveryPlan is the seed that rebuilds member 0 from the survivor. The revision is raised by
// etcd's recommended margin (a billion), not above what the members reported: quorum is lost,
// so most members did not answer and may be far ahead of the survivor, and watchers of the
// old cluster must never see a revision again with other data.
func (b *Backend) recoveryPlan(v *instanceView, statuses []etcdcluster.EndpointStatus, survivor int) *seed {
	inst := v.inst
	rev := statuses[survivor].Revision
	bump := uint64(fallbackRevisionBump)
	id := fmt.Sprintf("recover-%d", b.now().UnixNano())
	s := &seed{
		ID: id, Recover: backend.MemberName(inst.Name, survivor), Revision: rev, RevisionBump: bump,
		Token: fmt.Sprintf("%s-%s", clusterToken(inst), id), Replaced: v.replicas(),
	}
	if survivor > 0 {
		s.From = b.clientURL(inst, survivor)
	}
	return s
}

// startRecovery records the plan and, in the same update, gives the StatefulSet the pod
// template whose init container rebuilds member 0, and keeps the pods up to the survivor's.
func (b *Backend) startRecovery(ctx context.Context, v *instanceView, s *seed, survivor int) error {
	want := v.statefulSet(b.seedConfig(v.inst, s))
	err := b.updateStatefulSet(ctx, v, func(updated *appsv1.StatefulSet) {
		seedStatefulSet(updated, ptr.To(int32(survivor+1)), want.Spec.Template, s)
	})
	if err != nil {
		return err
	}
	return b.ensurePDB(ctx, v.inst, 1)
}

// continueRecovery takes the next step of the recovery s: it stops the members that are
// discarded, restarts member 0 rebuilt from the survivor, then removes the rest of the old
// cluster and ends the recovery.
func (b *Backend) continueRecovery(ctx context.Context, v *instanceView, s *seed) (*backend.Result, error) {
	inst := v.inst
	first := backend.MemberName(inst.Name, 0)
	res := &backend.Result{Members: v.podMembers(), StepReason: backend.StepRecovering,
		Step: fmt.Sprintf("recovering from member %s: member %s starts a new cluster from its data", s.Recover, first)}
	survivor := ordinalOf(inst, s.Recover)
	if !s.Seeded {
		if waiting, err := b.discardOldMembers(ctx, v, s, survivor); err != nil || waiting != "" {
			res.Step += fmt.Sprintf(": waiting for member %s of the old cluster to stop", waiting)
			return res, err
		}
		running, err := b.restartSeeded(ctx, v, s, res)
		if err != nil || !running {
			return res, err
		}
		if err := b.shrinkToFirst(ctx, v, s); err != nil {
			return res, err
		}
	}
	if waiting, err := b.discardOldMembers(ctx, v, s, -1); err != nil || waiting != "" {
		res.Step = fmt.Sprintf("recovered from member %s into member %s: waiting for member %s of the old cluster to stop",
			s.Recover, first, waiting)
		return res, err
	}
	err := b.updateStatefulSet(ctx, v, func(updated *appsv1.StatefulSet) {
		delete(updated.Annotations, annotationSeed)
		if s.RecoverRequest != "" {
			updated.Annotations[annotationLastRecovery] = s.RecoverRequest
		}
	})
	if err != nil {
		return res, err
	}
	res.Step = fmt.Sprintf("recovered from member %s; the other members join again as learners", s.Recover)
	res.Record(backend.ReasonRecovered, "Rebuilt the cluster from member %s (revision %d, raised by %d) as a new cluster of member %s; discarded the data of the other %d members; %d more members join it as learners",
		s.Recover, s.Revision, s.RevisionBump, first, s.Replaced-1, backend.DesiredReplicas(inst)-1)
	return res, nil
}

// discardOldMembers discards the members of the old cluster above 0 but keep, in order, and
// names the first one still stopping ("" once every one is gone).
func (b *Backend) discardOldMembers(ctx context.Context, v *instanceView, s *seed, keep int) (string, error) {
	for o := 1; o < s.Replaced; o++ {
		if o == keep {
			continue
		}
		if stopped, err := b.discardMember(ctx, v, s, o); err != nil || !stopped {
			return backend.MemberName(v.inst.Name, o), err
		}
	}
	return "", nil
}

// restartSeeded restarts member 0 through the seed init container unless its pod was created
// from the template of the seed s (a restore's or a recovery's), and reports whether it runs,
// ready.
func (b *Backend) restartSeeded(ctx context.Context, v *instanceView, s *seed, res *backend.Result) (bool, error) {
	inst := v.inst
	pods := b.opts.Client.CoreV1().Pods(inst.Namespace)
	first := backend.MemberName(inst.Name, 0)
	pod, err := pods.Get(ctx, first, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		res.Step += ": waiting for its pod"
		return false, nil // the StatefulSet creates it
	case err != nil:
		return false, err
	case pod.Annotations[annotationPodSeed] != s.ID:
		res.Step += fmt.Sprintf(": stopping member %s of the old cluster", first)
		return false, b.deletePodOnce(ctx, pod)
	case !podReady(pod):
		res.Step += ": waiting for it to start"
		return false, b.explainUnready(ctx, inst, res, []int{0})
	}
	return true, nil
}

// shrinkToFirst makes the StatefulSet member 0 alone, starting with the data it has, and
// records that member 0 runs the new cluster.
func (b *Backend) shrinkToFirst(ctx context.Context, v *instanceView, s *seed) error {
	mc := b.seedConfig(v.inst, s)
	mc.seed, mc.clusterState = nil, "existing"
	want := v.statefulSet(mc)
	seeded := *s
	seeded.Seeded = true
	err := b.updateStatefulSet(ctx, v, func(updated *appsv1.StatefulSet) {
		updated.Spec.Replicas, updated.Spec.Template = ptr.To[int32](1), want.Spec.Template
		updated.Annotations[annotationSeed] = seeded.annotation()
	})
	if err != nil {
		return err
	}
	s.Seeded = true
	return nil
}

// discardMember stops member o of the old cluster and deletes its volume (first, so that its
// pod never starts on it again), and reports whether its pod is gone. A pod the StatefulSet
// created from the recovery's template started on a new volume and never joins the old
// cluster: it counts as stopped until the StatefulSet shrinks.
func (b *Backend) discardMember(ctx context.Context, v *instanceView, s *seed, o int) (bool, error) {
	pod, err := b.opts.Client.CoreV1().Pods(v.inst.Namespace).Get(ctx, backend.MemberName(v.inst.Name, o), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return true, b.deleteVolume(ctx, v.inst, o)
	case err != nil:
		return false, err
	case !s.Seeded && pod.Annotations[annotationPodSeed] == s.ID:
		return true, nil
	}
	if err := b.deleteVolume(ctx, v.inst, o); err != nil {
		return false, err
	}
	return false, b.deletePodOnce(ctx, pod)
}

// deletePodOnce deletes pod unless it is being deleted already.
func (b *Backend) deletePodOnce(ctx context.Context, pod *corev1.Pod) error {
	if pod.DeletionTimestamp != nil {
		return nil
	}
	return b.deletePod(ctx, pod)
}

// recoverInitContainer rebuilds member 0's data directory from the survivor of a quorum loss
// before etcd starts: from its own database, or from a snapshot streamed from the survivor
// (with the instance's client certificate, for TLS instances). Other pods skip it.
func (b *Backend) recoverInitContainer(inst *v1beta1.ETCDInstance, mc memberConfig) corev1.Container {
	s := mc.seed
	args := []string{
		"--id=" + s.ID,
		"--member=" + backend.MemberName(inst.Name, 0),
		"--data-dir=" + dataDir + "/data",
		"--etcd-version=" + etcdMinor(inst),
		"--initial-cluster=" + mc.initialCluster,
		"--initial-cluster-token=" + mc.token,
		fmt.Sprintf("--revision-bump=%d", s.RevisionBump),
	}
	mounts := []corev1.VolumeMount{{Name: dataVolume, MountPath: dataDir}}
	switch {
	case s.From == "":
		args = append(args, "--from-own-data")
	default:
		args = append(args, "--from-member="+s.From)
		if inst.Spec.TLSEnabled() {
			args = append(args, "--client-cert="+tlsDir+"/"+SecretClientCert, "--client-key="+tlsDir+"/"+SecretClientKey,
				"--trusted-ca="+tlsDir+"/"+SecretCACert)
			mounts = append(mounts, corev1.VolumeMount{Name: tlsVolume, MountPath: tlsDir, ReadOnly: true})
		}
	}
	return corev1.Container{
		Name:    seedContainer,
		Image:   b.opts.ToolsImage,
		Command: append(append([]string{}, SeedCommand...), args...),
		Env: []corev1.EnvVar{
			{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		VolumeMounts:             mounts,
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
	}
}
