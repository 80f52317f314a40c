// Package kubernetes is the controller backend that runs the members of an etcd cluster in a
// Kubernetes cluster: per instance a StatefulSet, a headless Service for the members' DNS
// names, a client Service, a PodDisruptionBudget keeping quorum and, with TLS, a Secret with
// the instance's certificates, one with only what its clients need and one with the CA's key
// the certificates are issued again from before they expire. Every object is owned by the ETCDInstance. Membership changes
// go through the etcd API one member at a time, as with the local backend.
package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
)

// Options configure the kubernetes backend.
type Options struct {
	// Client talks to the cluster the members run in.
	Client kubernetes.Interface
	// Image is the etcd image of members: a repository (REPOSITORY:<release tag>) or
	// REPOSITORY:TAG with TagPlaceholder in TAG (default DefaultImage). The release tag is
	// ImageTags of the instance's etcd version.
	Image string
	// ImageTags maps etcd minor versions to image tags (default DefaultImageTags).
	ImageTags map[string]string
	// ClusterDomain is the cluster's DNS domain (default DefaultClusterDomain).
	ClusterDomain string
	// UpgradeStepTimeout is how long a member a version roll restarted has to become healthy
	// on its new image before the roll stops (default DefaultUpgradeStepTimeout).
	UpgradeStepTimeout time.Duration
	// ToolsImage is the etcdaas image, whose etcdaas-controller seed-member step seeds a
	// member from a snapshot as an init container. Empty refuses spec.restoreFrom and
	// restores.
	ToolsImage string
	// RestoreSource locates the backups spec.restoreFrom names; nil refuses spec.restoreFrom.
	RestoreSource backend.RemoteRestoreSource
	// MemberRepairGracePeriod is how long a voting member may stay unhealthy (its pod not
	// Ready: crash looping, Pending, failing its probes) before it is replaced by a new
	// member (0: backend.DefaultMemberRepairGracePeriod; negative: never). A member whose
	// volume claim is gone or was replaced is replaced at once.
	MemberRepairGracePeriod time.Duration
	// AutoCompaction is how members compact their history by themselves (empty fields:
	// backend.AutoCompaction's defaults, periodic with a retention of an hour). It starts no
	// roll: pods made before keep theirs until they are made anew from a template that has
	// it (the StatefulSet's template is written at creation, once the first member serves and
	// at each membership change).
	AutoCompaction backend.AutoCompaction
}

// Backend runs members as StatefulSet pods.
type Backend struct {
	opts  Options
	image imageTemplate
	// connect opens the etcd cluster of an instance; tests replace it with a fake.
	connect func(access *etcdcluster.Access) (membership, error)
	// now is the clock of step timeouts; tests replace it.
	now func() time.Time
	// health is since when members have been unhealthy, by instance and member ID.
	health *backend.HealthClock
	// quotas are the database quotas the members of instances run with, by namespace/name,
	// as their StatefulSets were last seen (QuotaBackendBytes).
	quotas sync.Map
}

var _ backend.Backend = &Backend{}

// New returns a kubernetes backend.
func New(opts Options) (*Backend, error) {
	if opts.Client == nil {
		return nil, errors.New("kubernetes backend: a client is required")
	}
	if opts.Image == "" {
		opts.Image = DefaultImage
	}
	if opts.ImageTags == nil {
		opts.ImageTags = DefaultImageTags
	}
	if opts.ClusterDomain == "" {
		opts.ClusterDomain = DefaultClusterDomain
	}
	if opts.UpgradeStepTimeout <= 0 {
		opts.UpgradeStepTimeout = DefaultUpgradeStepTimeout
	}
	if opts.MemberRepairGracePeriod == 0 {
		opts.MemberRepairGracePeriod = backend.DefaultMemberRepairGracePeriod
	}
	opts.AutoCompaction = opts.AutoCompaction.WithDefaults()
	if err := opts.AutoCompaction.Validate(); err != nil {
		return nil, fmt.Errorf("kubernetes backend: %w", err)
	}
	image, err := parseImage(opts.Image, opts.ImageTags)
	if err != nil {
		return nil, fmt.Errorf("kubernetes backend: %w", err)
	}
	return &Backend{opts: opts, image: image, connect: connectMembership, now: time.Now,
		health: &backend.HealthClock{Grace: opts.MemberRepairGracePeriod}}, nil
}

// Forget implements backend.Forgetter: it drops the health records of the instance's members.
func (b *Backend) Forget(namespace, name string) {
	b.health.ForgetPrefix(healthKeyPrefix(namespace, name))
	b.quotas.Delete(namespace + "/" + name)
}

var _ backend.Forgetter = &Backend{}

// Close implements backend.Backend; nothing runs in this process.
func (b *Backend) Close() error { return nil }

// Sync implements backend.Backend: it makes sure the instance's objects exist, observes the
// members, then either resumes a change an earlier step left half done or takes the next
// step toward the spec.
func (b *Backend) Sync(ctx context.Context, inst *v1beta1.ETCDInstance) (*backend.Result, error) {
	v, started, err := b.ensureObjects(ctx, inst)
	if err != nil || started != nil {
		return started, err
	}
	b.quotas.Store(inst.Namespace+"/"+inst.Name, templateQuota(v.sts, inst))
	res, err := b.step(ctx, v)
	if res != nil && len(v.events) > 0 {
		res.Events = slices.Concat(v.events, res.Events)
	}
	if res != nil && v.refusal != nil {
		res.Refuse(v.refusal, fmt.Sprintf("the members keep running image %s", v.image))
	}
	return res, err
}

// memberImage is the image the members of inst run: spec.version's. For a spec.version
// without an image (Image's PermanentError) an instance whose StatefulSet exists keeps
// running its template's image, and refusal says why: health checks, repair, scaling and
// backups go on, and only the version change is refused. A new instance cannot start: the
// error is returned.
func (b *Backend) memberImage(ctx context.Context, inst *v1beta1.ETCDInstance) (image string, refusal *backend.PermanentError, err error) {
	image, err = b.Image(inst)
	pe, permanent := backend.IsPermanent(err)
	if err == nil || !permanent {
		return image, nil, err
	}
	sts, getErr := b.opts.Client.AppsV1().StatefulSets(inst.Namespace).Get(ctx, statefulSetName(inst), metav1.GetOptions{})
	if apierrors.IsNotFound(getErr) {
		return "", nil, err
	}
	if getErr != nil {
		return "", nil, getErr
	}
	if current := etcdImage(&sts.Spec.Template.Spec); current != "" && metav1.IsControlledBy(sts, inst) {
		return current, pe, nil
	}
	return "", nil, err
}

// step observes the members of the instance of v, whose objects exist, then either resumes
// a change an earlier step left half done or takes the next step toward the spec.
func (b *Backend) step(ctx context.Context, v *instanceView) (*backend.Result, error) {
	inst := v.inst
	if res, seeding, err := b.restoreStep(ctx, v); seeding || err != nil {
		if err == nil && seeding {
			// A restore replaces every member: a replacement under way is moot.
			err = b.setAnnotation(ctx, v, annotationReplacement, nil)
		}
		return res, err
	}
	res := &backend.Result{Members: v.podMembers()}
	cluster, err := b.connectView(v)
	if err != nil {
		return res, err
	}
	defer func() { _ = cluster.Close() }()
	if v.sts.Status.ReadyReplicas == 0 {
		return b.noReadyMember(ctx, v, cluster)
	}
	obs, err := v.observe(ctx, cluster)
	if err != nil {
		res.Unhealthy = err.Error()
		_, err := b.reportQuorumLoss(ctx, v, cluster, res, false)
		return res, err
	}
	b.noteHealthy(v, obs)
	if obs.result.Unhealthy != "" {
		if err := b.explainUnready(ctx, inst, obs.result, unreadyOrdinals(inst, obs.result)); err != nil {
			return obs.result, err
		}
	}
	// A replacement under way goes first: its member is missing from etcd for a moment,
	// which is not a scale-down.
	if rep := v.replacement(); rep != nil {
		return obs.result, b.continueReplacement(ctx, v, cluster, obs, rep)
	}
	if resumed, err := b.resumeChange(ctx, v, cluster, obs); resumed || err != nil {
		return obs.result, err
	}
	// A member without its data is replaced before a version roll goes on.
	lost, err := b.lostVolumes(ctx, v, obs)
	if err != nil {
		return obs.result, err
	}
	if replacing, err := b.lostVolumeStep(ctx, v, cluster, obs, lost); replacing || err != nil {
		return obs.result, err
	}
	if rolling, err := b.rollMembers(ctx, v, cluster, obs); rolling || err != nil {
		return obs.result, err
	}
	if replacing, err := b.repairStep(ctx, v, cluster, obs, lost); replacing || err != nil {
		return obs.result, err
	}
	if obs.result.Unhealthy != "" {
		return obs.result, nil // every member must be healthy before the next step
	}
	return obs.result, b.stepTowardSpec(ctx, v, cluster, obs)
}

// noteHealthy notes on the health clock every member obs found healthy, whatever step the
// look then takes: a look that stops before the repair step (a roll, a scale, a replacement
// under way, for minutes) still saw them serve, so that a member failing again after such a
// step is unhealthy from then, not from a failure before it (repair would replace it at once).
func (b *Backend) noteHealthy(v *instanceView, obs *observation) {
	for _, m := range obs.members {
		if o := v.ordinal(m, len(obs.members)); o >= 0 && o < len(obs.statuses) && obs.statuses[o].Healthy && obs.statuses[o].MemberID == m.ID {
			b.health.Healthy(v.healthKey(m.ID))
		}
	}
}

// connectView opens the etcd cluster of the members that have a pod.
func (b *Backend) connectView(v *instanceView) (membership, error) {
	access := &etcdcluster.Access{Endpoints: v.clientURLs()}
	if v.tlsData != nil {
		var err error
		if access.TLS, err = clientTLS(v.tlsData); err != nil {
			return nil, err
		}
	}
	return b.connect(access)
}

// reportQuorumLoss asks every member for its status, for a look that could not list the
// members, and sets res.Members to what each answered: a member that answers is ready though
// the list failed (a linearizable list can time out while the leader changes, say, during a
// roll). When fewer than a quorum of the voting members answer it fills res with the loss
// (why the others' pods do not run, and with listUnhealthy what each member that did not
// answer said) and reports true.
func (b *Backend) reportQuorumLoss(ctx context.Context, v *instanceView, cluster membership, res *backend.Result, listUnhealthy bool) (bool, error) {
	statuses := cluster.Statuses(ctx)
	res.Members = v.answeringMembers(statuses)
	if res.QuorumLost = quorumLoss(res.Members); res.QuorumLost == "" {
		return false, nil
	}
	if listUnhealthy {
		var unhealthy []string
		for i, st := range statuses {
			if !st.Healthy {
				unhealthy = append(unhealthy, fmt.Sprintf("%s: %v", backend.MemberName(v.inst.Name, i), st.Err))
			}
		}
		res.Unhealthy = "unhealthy members: " + strings.Join(unhealthy, "; ")
	}
	return true, b.explainUnready(ctx, v.inst, res, downOrdinals(statuses))
}

// noReadyMember reports on an instance none of whose pods is ready. Once the cluster has
// more than one member that is a quorum loss when fewer than a majority answer at all (their
// pods crash, are gone or lost their volumes): the StatefulSet starts pods one at a time and
// waits for each to be ready, so a cluster in this state never comes back by itself.
// Otherwise member 0 is starting, or a version roll waits for it.
func (b *Backend) noReadyMember(ctx context.Context, v *instanceView, cluster membership) (*backend.Result, error) {
	inst := v.inst
	res := &backend.Result{Members: v.podMembers()}
	if v.replicas() > 1 {
		if lost, err := b.reportQuorumLoss(ctx, v, cluster, res, true); lost || err != nil {
			return res, err
		}
	}
	res.Step, res.StepReason = fmt.Sprintf("waiting for member %s to start", backend.MemberName(inst.Name, 0)), backend.StepDeploying
	if err := b.explainUnready(ctx, inst, res, []int{0}); err != nil {
		return res, err
	}
	return res, b.rollWithoutReadyMember(ctx, v, res)
}

// answeringMembers describes the members that have a pod with what each reported about
// itself (statuses in ordinal order), when the membership cannot be listed. A member that
// does not answer is a learner when it is taken for one (presumedLearner).
func (v *instanceView) answeringMembers(statuses []etcdcluster.EndpointStatus) []v1beta1.MemberStatus {
	members, learner := v.podMembers(), v.presumedLearner(statuses)
	for i := range members {
		if i >= len(statuses) || statuses[i].MemberID == 0 {
			members[i].Learner = i == learner
			continue
		}
		st := statuses[i]
		members[i] = backend.WithEndpointStatus(members[i], st)
		members[i].ID, members[i].Learner = etcdcluster.FormatID(st.MemberID), st.IsLearner
		members[i].Ready, members[i].Leader = st.Healthy, st.IsLeader()
	}
	return members
}

// downOrdinals are the ordinals of the members that did not answer at all.
func downOrdinals(statuses []etcdcluster.EndpointStatus) []int {
	var out []int
	for i, st := range statuses {
		if st.MemberID == 0 {
			out = append(out, i)
		}
	}
	return out
}

// quorumLoss explains, when the membership cannot be listed, that fewer than a majority of
// the voting members with a pod answer at all, or returns "". members are answeringMembers'
// (one per pod, in ordinal order): one that answered has its ID; a learner is not a voting
// member, whether it said so or is taken for one (presumedLearner), such as the learner of a
// scale-up whose pod is starting.
func quorumLoss(members []v1beta1.MemberStatus) string {
	var voting, down []string
	for _, m := range members {
		if m.Learner {
			continue
		}
		voting = append(voting, m.Name)
		if m.ID == "" {
			down = append(down, m.Name)
		}
	}
	return backend.QuorumLoss(voting, down)
}

// presumedLearner is the ordinal of the member taken for a learner, at a look that could not
// list the members (statuses in ordinal order), -1 for none. etcd has one learner at a time:
// when a member answers as a learner, that one; otherwise a member that does not answer and
// that the instance's status, as the last look wrote it, does not have at all (a member added
// since, which etcd adds as a learner: the highest such ordinal, since the controller adds
// them in order), or else has as a learner. Without members in the status none is. The look
// that promotes a learner writes it as voting (markPromoted), so only a status older than
// that (the copy of the instance this look works from lagging the last write) takes a voting
// member for a learner; with an odd number of voting members, leaving one that does not
// answer out of both the voting members and those down does not change whether a quorum
// answers.
func (v *instanceView) presumedLearner(statuses []etcdcluster.EndpointStatus) int {
	last := map[string]v1beta1.MemberStatus{}
	for _, m := range v.inst.Status.Members {
		last[m.Name] = m
	}
	if len(last) == 0 || slices.ContainsFunc(statuses, func(st etcdcluster.EndpointStatus) bool { return st.MemberID != 0 && st.IsLearner }) {
		return -1
	}
	added, recorded := -1, -1
	for o := range v.replicas() {
		if o < len(statuses) && statuses[o].MemberID != 0 {
			continue
		}
		switch m, ok := last[backend.MemberName(v.inst.Name, o)]; {
		case !ok:
			added = o
		case m.Learner:
			recorded = o
		}
	}
	if added >= 0 {
		return added
	}
	return recorded
}

// instanceView is what a Sync works from: the instance, its etcd image, its StatefulSet and,
// with TLS, the data of its TLS Secret.
type instanceView struct {
	b     *Backend
	inst  *v1beta1.ETCDInstance
	image string
	// resources are the member container's resources for inst (memberResources) and
	// resourcesRecord their record (resourcesRecord), derived once per Sync.
	resources       corev1.ResourceRequirements
	resourcesRecord string
	sts             *appsv1.StatefulSet
	// tlsData is the TLS Secret's data and trust the CAs of its ca.crt that member pods must
	// trust, set together by setTLS; zero without TLS.
	tlsData map[string][]byte
	trust   trust
	// events are what ensuring the instance's objects did (a CA added, certificates
	// renewed), reported with the Sync's result.
	events []backend.Event
	// pods are the member pods by name, as the Sync listed them (nil before).
	pods map[string]*corev1.Pod
	// refusal, when set, says why spec.version cannot be run (it has no image): image is
	// then the StatefulSet template's, the one the members run already (memberImage).
	refusal *backend.PermanentError
}

// newInstanceView is the view of inst, whose members run image, with the resources its
// members run with derived once.
func (b *Backend) newInstanceView(inst *v1beta1.ETCDInstance, image string) *instanceView {
	resources := memberResources(inst)
	return &instanceView{b: b, inst: inst, image: image, resources: resources, resourcesRecord: resourcesRecord(resources)}
}

// record adds an event to those the Sync reports.
func (v *instanceView) record(reason backend.EventReason, format string, args ...any) {
	v.events = append(v.events, backend.Event{Reason: reason, Note: fmt.Sprintf(format, args...)})
}

// statefulSet is the instance's StatefulSet for mc, its pods trusting the view's CAs, with the
// database quota its members run with (legacyQuota).
func (v *instanceView) statefulSet(mc memberConfig) *appsv1.StatefulSet {
	mc.trust = v.trust.record
	mc.etcdDefaultQuota = legacyQuota(v.sts)
	return v.b.statefulSet(v.inst, v.image, mc)
}

// podsReady reports whether the pods of the first n members are Ready: by the StatefulSet's
// status or, since that lags the pods, by the pods the Sync listed.
func (v *instanceView) podsReady(n int) bool {
	if int(v.sts.Status.ReadyReplicas) == n {
		return true
	}
	if v.pods == nil {
		return false
	}
	for i := range n {
		pod := v.pods[backend.MemberName(v.inst.Name, i)]
		if pod == nil || !podReady(pod) {
			return false
		}
	}
	return true
}

// terminatingMember names a member of obs other than except whose pod is being deleted (a
// node drain evicted it, a person deleted it), "" when there is none, from the pods the Sync
// listed. Its etcd may still answer, so it counts as healthy, but it is about to stop: a step
// that stops or removes another member then waits, or quorum would be lost until it is back.
func (v *instanceView) terminatingMember(obs *observation, except string) string {
	for _, m := range obs.result.Members {
		if pod := v.pods[m.Name]; m.Name != except && pod != nil && pod.DeletionTimestamp != nil {
			return m.Name
		}
	}
	return ""
}

// replicas is the StatefulSet's replica count: the members that have (or will have) a pod.
func (v *instanceView) replicas() int { return int(ptr.Deref(v.sts.Spec.Replicas, 1)) }

// podMembers describes the members that have a pod, before etcd is asked about them.
func (v *instanceView) podMembers() []v1beta1.MemberStatus {
	var out []v1beta1.MemberStatus
	for i := range v.replicas() {
		out = append(out, v1beta1.MemberStatus{Name: backend.MemberName(v.inst.Name, i), PeerURL: v.b.peerURL(v.inst, i), ClientURL: v.b.clientURL(v.inst, i)})
	}
	return out
}

// clientURLs are the client URLs of the members that have a pod, in ordinal order.
func (v *instanceView) clientURLs() []string {
	var out []string
	for i := range v.replicas() {
		out = append(out, v.b.clientURL(v.inst, i))
	}
	return out
}

// ordinal is the ordinal of the pod whose peer URL the member has, -1 for none.
func (v *instanceView) ordinal(m etcdcluster.Member, members int) int {
	for i := range max(v.replicas(), members) + 1 {
		if slices.Contains(m.PeerURLs, v.b.peerURL(v.inst, i)) {
			return i
		}
	}
	return -1
}

// ensureObjects makes sure the instance's TLS Secret (with TLS), Services and StatefulSet
// exist. When the StatefulSet is missing it creates it with the first member, which starts
// a new cluster on its own, and returns that step's result instead of a view.
func (b *Backend) ensureObjects(ctx context.Context, inst *v1beta1.ETCDInstance) (*instanceView, *backend.Result, error) {
	image, refusal, err := b.memberImage(ctx, inst)
	if err != nil {
		return nil, nil, err
	}
	v := b.newInstanceView(inst, image)
	v.refusal = refusal
	stsClient := b.opts.Client.AppsV1().StatefulSets(inst.Namespace)
	restoreFrom, err := b.locateRestoreFrom(ctx, inst)
	if err != nil {
		return nil, nil, err
	}
	if inst.Spec.TLSEnabled() {
		if err := b.ensureTLS(ctx, v); err != nil {
			return nil, nil, err
		}
	}
	if err := b.ensureService(ctx, inst, peerService(inst)); err != nil {
		return nil, nil, err
	}
	if err := b.ensureService(ctx, inst, clientService(inst)); err != nil {
		return nil, nil, err
	}
	v.sts, err = stsClient.Get(ctx, statefulSetName(inst), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		started, err := b.startFirstMember(ctx, v, restoreFrom)
		return nil, started, err
	}
	if err != nil {
		return nil, nil, err
	}
	if !metav1.IsControlledBy(v.sts, inst) {
		return nil, nil, nameConflict("StatefulSet", v.sts)
	}
	return v, nil, nil
}

// locateRestoreFrom returns the seed of an instance restored from a backup
// (spec.restoreFrom) whose StatefulSet does not exist yet; nil without restoreFrom or once
// the StatefulSet exists. Nothing is created for a backup that cannot be restored from.
func (b *Backend) locateRestoreFrom(ctx context.Context, inst *v1beta1.ETCDInstance) (*seed, error) {
	if inst.Spec.RestoreFrom == nil {
		return nil, nil
	}
	_, err := b.opts.Client.AppsV1().StatefulSets(inst.Namespace).Get(ctx, statefulSetName(inst), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return b.restoreFromSeed(ctx, inst)
	}
	return nil, err
}

// startFirstMember creates v's StatefulSet with the first member, which starts a new cluster
// on its own (from restoreFrom, the seed locateRestoreFrom returned, for an instance restored
// from a backup), and its PodDisruptionBudget, and returns that step's result.
func (b *Backend) startFirstMember(ctx context.Context, v *instanceView, restoreFrom *seed) (*backend.Result, error) {
	inst := v.inst
	mc := memberConfig{
		replicas:       1,
		initialCluster: backend.MemberName(inst.Name, 0) + "=" + b.peerURL(inst, 0),
		clusterState:   "new",
		token:          clusterToken(inst),
	}
	step := fmt.Sprintf("starting the first member %s", backend.MemberName(inst.Name, 0))
	if inst.Spec.RestoreFrom != nil {
		// Starting empty would silently ignore what the user asked for.
		if mc.seed = restoreFrom; mc.seed == nil {
			return nil, fmt.Errorf("the StatefulSet of %s/%s appeared while its backup was located; retrying", inst.Namespace, inst.Name)
		}
		step = fmt.Sprintf("starting the first member %s from backup %s of %s", backend.MemberName(inst.Name, 0), mc.seed.Key, inst.Spec.RestoreFrom.Instance)
	}
	if _, err := b.opts.Client.AppsV1().StatefulSets(inst.Namespace).Create(ctx, v.statefulSet(mc), metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	if err := b.ensurePDB(ctx, inst, 1); err != nil {
		return nil, err
	}
	return &backend.Result{Step: step, StepReason: backend.StepDeploying, Events: v.events}, nil
}

// observation is what the members reported: the cluster's membership in ordinal order, the
// health of every pod's member, and the Result describing them.
type observation struct {
	members  []etcdcluster.Member
	statuses []etcdcluster.EndpointStatus
	result   *backend.Result
}

// observe lists the members and asks each pod's member for its health. It fails when the
// membership cannot be listed.
func (v *instanceView) observe(ctx context.Context, cluster membership) (*observation, error) {
	members, err := cluster.MemberList(ctx)
	if err != nil {
		return nil, err
	}
	ordinal := func(m etcdcluster.Member) int { return v.ordinal(m, len(members)) }
	sort.Slice(members, func(i, j int) bool { return ordinal(members[i]) < ordinal(members[j]) })
	obs := &observation{members: members, statuses: cluster.Statuses(ctx), result: &backend.Result{}}
	var unhealthy []string
	for _, m := range members {
		o := ordinal(m)
		ms := v1beta1.MemberStatus{Name: backend.MemberName(v.inst.Name, o), ID: m.IDString(), PeerURL: v.b.peerURL(v.inst, o), ClientURL: v.b.clientURL(v.inst, o), Learner: m.IsLearner}
		if o >= 0 && o < len(obs.statuses) {
			st := obs.statuses[o]
			ms = backend.WithEndpointStatus(ms, st)
			ms.Ready, ms.Leader = st.Healthy, st.IsLeader()
			if !st.Healthy {
				unhealthy = append(unhealthy, fmt.Sprintf("%s: %v", ms.Name, st.Err))
			}
		} else {
			unhealthy = append(unhealthy, fmt.Sprintf("%s: no pod yet", ms.Name))
		}
		obs.result.Members = append(obs.result.Members, ms)
	}
	if len(unhealthy) > 0 {
		obs.result.Unhealthy = "unhealthy members: " + strings.Join(unhealthy, "; ")
	}
	return obs, nil
}

// resumeChange finishes a change an earlier step left half done: a member added to etcd
// whose pod is not there yet, a member removed from etcd whose pod still is, or a learner
// not yet promoted. It reports whether there was such a change.
func (b *Backend) resumeChange(ctx context.Context, v *instanceView, cluster membership, obs *observation) (bool, error) {
	res, members, replicas := obs.result, obs.members, v.replicas()
	switch {
	case len(members) > replicas:
		res.Step, res.StepReason = fmt.Sprintf("starting member %s", backend.MemberName(v.inst.Name, replicas)), backend.StepAddingMember
		// A member that never started has no name yet; its pod's name is its ordinal's.
		for i := range members {
			if o := v.ordinal(members[i], len(members)); members[i].Name == "" && o >= 0 {
				members[i].Name = backend.MemberName(v.inst.Name, o)
			}
		}
		return true, b.setMembers(ctx, v, members)
	case len(members) < replicas:
		if o := v.missingOrdinal(members); o < len(members) {
			// Not the highest ordinals: a member removed from etcd by someone else. Shrinking
			// would stop a member etcd still counts.
			return true, b.replaceMissing(ctx, v, cluster, obs, o)
		}
		res.Step, res.StepReason = fmt.Sprintf("removing the pod of member %s", backend.MemberName(v.inst.Name, replicas-1)), backend.StepRemovingMember
		if err := b.setMembers(ctx, v, members); err != nil {
			return true, err
		}
		return true, b.deleteVolume(ctx, v.inst, replicas-1)
	}
	for _, m := range members {
		if m.IsLearner {
			return true, b.resumeLearner(ctx, v, cluster, obs, m)
		}
	}
	return false, nil
}

// resumeLearner promotes the learner m once it serves. A learner spec.replicas no longer asks
// for (a scale-up undone, perhaps because its pod cannot start) is removed instead, with its
// volume: removing a learner never costs quorum.
func (b *Backend) resumeLearner(ctx context.Context, v *instanceView, cluster membership, obs *observation, m etcdcluster.Member) error {
	res, members := obs.result, obs.members
	o := v.ordinal(m, len(members))
	name := backend.MemberName(v.inst.Name, o)
	if o >= backend.DesiredReplicas(v.inst) && o == len(members)-1 {
		res.Step, res.StepReason = fmt.Sprintf("removing member %s", name), backend.StepRemovingMember
		if err := cluster.Remove(ctx, m.ID); err != nil {
			return err
		}
		res.Record(backend.ReasonMemberRemoved, "Removed member %s (ID %s), a learner spec.replicas no longer asks for; its volume is deleted with its pod", name, m.IDString())
		b.forgetLearner(v, m.ID)
		if err := b.setMembers(ctx, v, members[:len(members)-1]); err != nil {
			return err
		}
		return b.deleteVolume(ctx, v.inst, o)
	}
	res.Step, res.StepReason = fmt.Sprintf("promoting member %s", name), backend.StepAddingMember
	// Only the learner's own health counts: another member down is replaced once no change
	// is under way, so waiting for it would wait forever. etcd refuses a promotion that
	// would cost quorum, or of a learner not caught up.
	if o < 0 || o >= len(obs.statuses) || !obs.statuses[o].Healthy || obs.statuses[o].MemberID != m.ID {
		// The learner's pod is still starting, or never will. A pod on a volume claim being
		// deleted never will: it is the pod of the member a scale-down removed, which the
		// StatefulSet kept because the scale-up came before it shrank, crash looping on the
		// removed member's data and holding the claim (recreatePod).
		if o >= 0 {
			if err := b.recreatePod(ctx, v, o); err != nil {
				return err
			}
			if err := b.renewLearnerPod(ctx, v, o); err != nil {
				return err
			}
		}
		b.noteLearnerNotServing(v, res, m, o, len(members))
		return nil
	}
	// It serves: should it stop, its time without serving counts from then, not from when
	// it was first seen not serving (a slow start is not held against it).
	b.health.Healthy(v.healthKey(m.ID))
	if err := cluster.Promote(ctx, m.ID); err != nil {
		if behindLeader(ctx, err) {
			res.Step = fmt.Sprintf("promoting member %s: waiting for it to catch up with the leader", name)
			res.StepWait = backend.CatchUpInterval
			b.noteLearnerBehind(v, obs, m, o)
			return nil
		}
		b.promotionUnanswered(v, m.ID)
		return err
	}
	// Its wait as a learner does not count against the voting member it now is (repair).
	b.forgetLearner(v, m.ID)
	markPromoted(res, name)
	res.Record(backend.ReasonMemberPromoted, "Promoted member %s (ID %s) to a voting member", name, etcdcluster.FormatID(m.ID))
	return nil
}

// markPromoted has the member name of res, a learner the step promoted, report as the voting
// member it now is: the status the look writes then says so, and a later look that cannot
// list the members does not take it for a learner (presumedLearner).
func markPromoted(res *backend.Result, name string) {
	for i := range res.Members {
		if res.Members[i].Name == name {
			res.Members[i].Learner = false
		}
	}
}

// behindLeader reports whether err, a failed promotion, means that the learner is still behind
// its leader: the step is under way, and a later Sync tries again, rather than one waiting
// for it (a learner receiving a large database takes minutes).
func behindLeader(ctx context.Context, err error) bool {
	return errors.Is(err, etcdcluster.ErrLearnerNotInSync) && ctx.Err() == nil
}

// noteLearnerNotServing reports the instance blocked (reason MemberNotJoining) once m, the
// learner with ordinal o of a membership of n, the highest (a scale-up's), has not served
// for longer than backend.JoinDeadline since this controller first saw it waiting (see
// backend.NoteNotJoining). The health clock counts the time; the learner is forgotten once
// it is removed or promoted.
func (b *Backend) noteLearnerNotServing(v *instanceView, res *backend.Result, m etcdcluster.Member, o, n int) {
	if o != n-1 {
		return
	}
	backend.NoteNotJoining(res, backend.MemberName(v.inst.Name, o), backend.DesiredReplicas(v.inst), o, "its pod", b.health.Unhealthy(v.healthKey(m.ID)), backend.JoinDeadline)
}

// noteLearnerBehind reports the instance blocked (reason MemberNotJoining) once m, the
// learner with ordinal o, the highest (a scale-up's), serves but etcd has refused to promote
// it as behind its leader for longer than backend.JoinDeadline since this controller first
// found it so (see backend.NoteNotCatchingUp), with its revision against the leader's. Its
// own record of the health clock counts the time, apart from the one of a learner that does
// not serve, so that a pod slow to start does not count against the catching up that follows.
func (b *Backend) noteLearnerBehind(v *instanceView, obs *observation, m etcdcluster.Member, o int) {
	if o != len(obs.members)-1 {
		return
	}
	behind := b.health.Unhealthy(v.behindKey(m.ID))
	backend.NoteNotCatchingUp(obs.result, backend.MemberName(v.inst.Name, o), backend.DesiredReplicas(v.inst), o, v.learnerLag(obs, o), behind, backend.JoinDeadline)
}

// learnerLag says how far the learner with ordinal o, which serves, is behind its leader
// (backend.LearnerLag), from the members' status obs observed; "" when it cannot tell.
func (v *instanceView) learnerLag(obs *observation, o int) string {
	learner, lag := obs.statuses[o], ""
	for i, st := range obs.statuses {
		if st.MemberID != 0 && st.MemberID == learner.Leader {
			lag = backend.LearnerLag(learner, backend.MemberName(v.inst.Name, i), st)
		}
	}
	return lag
}

// promotionUnanswered forgets how long the learner id, which served at this look, did not
// serve, after its promotion failed for a reason other than its being behind its leader: the
// promotion may have gone through with its answer lost (a timeout), and the next look then
// finds a voting member, whose wait as a learner must not count against it (repair would
// replace it at its first failure). Should it still be a learner, its clock starts again from
// a look at which it served.
func (b *Backend) promotionUnanswered(v *instanceView, id uint64) {
	b.health.Forget(v.healthKey(id))
}

// forgetLearner drops the health clock's records of the learner id, promoted or removed: how
// long it did not serve, and how long it was behind its leader.
func (b *Backend) forgetLearner(v *instanceView, id uint64) {
	b.health.Forget(v.healthKey(id))
	b.health.Forget(v.behindKey(id))
}

// stepTowardSpec takes the next step toward spec.replicas on a healthy cluster with no change
// under way: add a learner, or move leadership away from the member with the highest
// ordinal and remove it. With the membership as requested, it reports convergence.
func (b *Backend) stepTowardSpec(ctx context.Context, v *instanceView, cluster membership, obs *observation) error {
	res, members := obs.result, obs.members
	desired := backend.DesiredReplicas(v.inst)
	switch {
	case len(members) < desired:
		next := len(members)
		res.Step, res.StepReason = fmt.Sprintf("adding member %s", backend.MemberName(v.inst.Name, next)), backend.StepAddingMember
		id, after, err := cluster.AddLearner(ctx, b.peerURL(v.inst, next))
		if err != nil {
			return err
		}
		for i := range after {
			if after[i].ID == id {
				after[i].Name = backend.MemberName(v.inst.Name, next)
			}
		}
		res.Record(backend.ReasonMemberAdded, "Added member %s (ID %s) as a learner", backend.MemberName(v.inst.Name, next), etcdcluster.FormatID(id))
		return b.setMembers(ctx, v, after)
	case len(members) > desired:
		victim := members[len(members)-1] // highest ordinal
		ordinal := v.ordinal(victim, len(members))
		res.Step, res.StepReason = fmt.Sprintf("removing member %s", backend.MemberName(v.inst.Name, ordinal)), backend.StepRemovingMember
		if name := v.terminatingMember(obs, backend.MemberName(v.inst.Name, ordinal)); name != "" {
			res.Step += fmt.Sprintf(": waiting for the pod of member %s, being deleted, to come back", name)
			return nil
		}
		if err := cluster.MoveLeaderAway(ctx, victim.ID, members, obs.statuses); err != nil {
			return err
		}
		if err := cluster.Remove(ctx, victim.ID); err != nil {
			return err
		}
		res.Record(backend.ReasonMemberRemoved, "Removed member %s (ID %s); its volume is deleted with its pod", backend.MemberName(v.inst.Name, ordinal), victim.IDString())
		if err := b.setMembers(ctx, v, members[:len(members)-1]); err != nil {
			return err
		}
		return b.deleteVolume(ctx, v.inst, ordinal)
	}
	if v.startsNewCluster() {
		// The cluster exists: a member that comes back without its data must not start
		// another one (setMembers).
		if err := b.setMembers(ctx, v, members); err != nil {
			return err
		}
	}
	if err := b.ensurePDB(ctx, v.inst, len(members)); err != nil {
		return err
	}
	res.Converged = v.podsReady(len(members))
	return nil
}

// startsNewCluster reports whether the StatefulSet's pods start a new cluster when their data
// directory is empty (ETCD_INITIAL_CLUSTER_STATE=new), as the first member of an instance
// does. Once that member serves, its pod must start with "existing": with "new", a pod whose
// volume was lost or replaced bootstraps an empty cluster of one under the same name and URL,
// which then serves every client as if it were the instance, its keys gone and its revisions
// starting over; with "existing" etcd refuses to start, and the instance reports the member
// unhealthy until a person restores it.
func (v *instanceView) startsNewCluster() bool {
	state, _ := templateEnv(v.sts, "ETCD_INITIAL_CLUSTER_STATE")
	return state == "new"
}

// templateEnv is the value of the environment variable name of the etcd container of sts's
// pod template, and whether it is set.
func templateEnv(sts *appsv1.StatefulSet, name string) (string, bool) {
	for _, c := range sts.Spec.Template.Spec.Containers {
		if c.Name != "etcd" {
			continue
		}
		for _, e := range c.Env {
			if e.Name == name {
				return e.Value, true
			}
		}
	}
	return "", false
}

// setMembers sets the StatefulSet's replicas to one pod per member and the initial cluster
// the next new member starts with, and the PodDisruptionBudget's quorum.
func (b *Backend) setMembers(ctx context.Context, v *instanceView, members []etcdcluster.Member) error {
	inst, sts, replicas := v.inst, v.sts, len(members)
	var initial []string
	for _, m := range members {
		if m.Name == "" {
			continue
		}
		for _, u := range m.PeerURLs {
			initial = append(initial, m.Name+"="+u)
		}
	}
	mc := memberConfig{replicas: int32(replicas), initialCluster: strings.Join(initial, ","), clusterState: "existing", token: sts.Annotations[annotationClusterToken]}
	want := v.statefulSet(mc)
	if err := b.updateStatefulSet(ctx, v, func(updated *appsv1.StatefulSet) {
		updated.Spec.Replicas = want.Spec.Replicas
		updated.Spec.Template = want.Spec.Template
	}); err != nil {
		return err
	}
	return b.ensurePDB(ctx, inst, replicas)
}

// updateStatefulSet applies change to the instance's StatefulSet and stores it; v.sts becomes
// the stored object. An update that loses a race (the StatefulSet controller writes its
// status whenever a pod changes, so during a roll or a repair it often does) is applied
// again to the StatefulSet read anew: a failed write would otherwise fail the whole step,
// after it may have recorded Events for what it did.
func (b *Backend) updateStatefulSet(ctx context.Context, v *instanceView, change func(*appsv1.StatefulSet)) error {
	client := b.opts.Client.AppsV1().StatefulSets(v.inst.Namespace)
	current := v.sts
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		updated := current.DeepCopy()
		change(updated)
		stored, err := client.Update(ctx, updated, metav1.UpdateOptions{})
		if err == nil {
			v.sts = stored
			return nil
		}
		if !apierrors.IsConflict(err) {
			return err
		}
		latest, getErr := client.Get(ctx, current.Name, metav1.GetOptions{})
		if getErr != nil {
			return getErr
		}
		if latest.UID != current.UID {
			return fmt.Errorf("the StatefulSet %s/%s was replaced meanwhile", current.Namespace, current.Name)
		}
		current = latest
		return err
	})
}

// deleteVolume deletes the volume of a removed member so that a later member with the same
// ordinal never starts from its data.
func (b *Backend) deleteVolume(ctx context.Context, inst *v1beta1.ETCDInstance, ordinal int) error {
	name := dataVolume + "-" + backend.MemberName(inst.Name, ordinal)
	err := b.opts.Client.CoreV1().PersistentVolumeClaims(inst.Namespace).Delete(ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func (b *Backend) ensureService(ctx context.Context, inst *v1beta1.ETCDInstance, want *corev1.Service) error {
	// A Service is only created: its cluster IP and ports are its own once it exists.
	return ensureObject(ctx, b.opts.Client.CoreV1().Services(want.Namespace), "Service", inst, want, nil)
}

func (b *Backend) ensurePDB(ctx context.Context, inst *v1beta1.ETCDInstance, members int) error {
	want := podDisruptionBudget(inst, members)
	return ensureObject(ctx, b.opts.Client.PolicyV1().PodDisruptionBudgets(inst.Namespace), "PodDisruptionBudget", inst, want,
		func(got *policyv1.PodDisruptionBudget) bool {
			if got.Spec.MinAvailable != nil && *got.Spec.MinAvailable == *want.Spec.MinAvailable {
				return false
			}
			got.Spec.MinAvailable = want.Spec.MinAvailable
			return true
		})
}

// Access implements etcdcluster.Dialer: the members' client URLs through the headless
// Service and, for TLS instances, the client certificate from the instance's Secret.
func (b *Backend) Access(ctx context.Context, namespace, name string) (*etcdcluster.Access, error) {
	sts, err := b.opts.Client.AppsV1().StatefulSets(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("%w: instance %s/%s has no StatefulSet", etcdcluster.ErrNoMembers, namespace, name)
	}
	if err != nil {
		return nil, err
	}
	inst := &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	access := &etcdcluster.Access{}
	secret, err := b.opts.Client.CoreV1().Secrets(namespace).Get(ctx, TLSSecretName(inst), metav1.GetOptions{})
	switch {
	case err == nil && ownedBySame(secret, sts):
		inst.Spec.TLS = &v1beta1.TLSSpec{Enabled: true}
		if access.TLS, err = clientTLS(secret.Data); err != nil {
			return nil, err
		}
	case err != nil && !apierrors.IsNotFound(err):
		return nil, err
	}
	for i := range int(ptr.Deref(sts.Spec.Replicas, 0)) {
		access.Endpoints = append(access.Endpoints, b.clientURL(inst, i))
	}
	if len(access.Endpoints) == 0 {
		return nil, fmt.Errorf("%w: instance %s/%s has no members", etcdcluster.ErrNoMembers, namespace, name)
	}
	return access, nil
}

// ownedBySame reports whether two objects have the same controller.
func ownedBySame(a, b metav1.Object) bool {
	ca, cb := metav1.GetControllerOf(a), metav1.GetControllerOf(b)
	return ca != nil && cb != nil && ca.UID == cb.UID
}

// Delete implements backend.Backend: it deletes every object of the instance (owner
// references would too, once the instance is gone; the finalizer makes it explicit).
func (b *Backend) Delete(ctx context.Context, inst *v1beta1.ETCDInstance) error {
	c := b.opts.Client
	ns := inst.Namespace
	propagation := metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)}
	deletes := []func() error{
		func() error {
			return deleteOwned(ctx, c.AppsV1().StatefulSets(ns), inst, statefulSetName(inst), propagation)
		},
		func() error {
			return deleteOwned(ctx, c.PolicyV1().PodDisruptionBudgets(ns), inst, pdbName(inst), metav1.DeleteOptions{})
		},
		func() error {
			return deleteOwned(ctx, c.CoreV1().Services(ns), inst, ClientServiceName(inst), metav1.DeleteOptions{})
		},
		func() error {
			return deleteOwned(ctx, c.CoreV1().Services(ns), inst, PeerServiceName(inst), metav1.DeleteOptions{})
		},
		func() error {
			return deleteOwned(ctx, c.CoreV1().Secrets(ns), inst, TLSSecretName(inst), metav1.DeleteOptions{})
		},
		func() error {
			return deleteOwned(ctx, c.CoreV1().Secrets(ns), inst, ClientTLSSecretName(inst), metav1.DeleteOptions{})
		},
		func() error {
			return deleteOwned(ctx, c.CoreV1().Secrets(ns), inst, CASecretName(inst), metav1.DeleteOptions{})
		},
	}
	var errs []error
	for _, del := range deletes {
		if err := del(); err != nil {
			errs = append(errs, err)
		}
	}
	pvcs, err := c.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{LabelSelector: etcdaas.MemberSelector(inst.Name)})
	if err != nil {
		errs = append(errs, err)
	} else {
		for _, pvc := range pvcs.Items {
			if !strings.HasPrefix(pvc.Name, dataVolume+"-"+inst.Name+"-") {
				continue
			}
			if _, err := strconv.Atoi(strings.TrimPrefix(pvc.Name, dataVolume+"-"+inst.Name+"-")); err != nil {
				continue
			}
			if err := c.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, pvc.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
