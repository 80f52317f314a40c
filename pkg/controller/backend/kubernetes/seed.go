package kubernetes

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/backup"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	"github.com/etcdaas/etcdaas/pkg/memberseed"
	"github.com/etcdaas/etcdaas/pkg/snapshot"
)

// How a cluster starts from a snapshot (spec.restoreFrom, or a restore the API server
// accepted): member 0 is seeded from it by an init container of the etcdaas image (SeedCommand),
// as a new one-member cluster; the other members join it again as learners through the
// ordinary scale-up steps, and receive the restored data from it. The StatefulSet records
// the seed under way (annotationSeed) before anything changes, so that another controller
// resumes it.
const (
	// annotationSeed on the StatefulSet is the seed under way, as JSON.
	annotationSeed = "etcdaas.dev/seed"
	// annotationRestoreRequest on the StatefulSet is a restore the API server accepted and
	// staged (RestoreRequest as JSON); it stays until the restore is done, and the API server
	// refuses another one meanwhile.
	annotationRestoreRequest = "etcdaas.dev/restore-request"
	// annotationLastRecovery on the StatefulSet is the ID of the recover request whose
	// recovery ended last, written with the end of the recovery: that request, still
	// recorded on the instance, is carried out already, not refused.
	annotationLastRecovery = "etcdaas.dev/last-recovery"
	// annotationPodSeed on the pod template names the seed its init container builds; a pod
	// without it runs the data from before.
	annotationPodSeed = "etcdaas.dev/seed-id"

	// seedContainer is the init container's name.
	seedContainer = "seed"
	// fallbackRevisionBump raises the revision of a restored cluster when the revision of
	// the cluster it replaces cannot be read: far above what clusters reach in practice.
	fallbackRevisionBump = 1_000_000_000
	// revisionMargin covers writes the old cluster takes between the read of its revision
	// and its stop. The seed step reads the revision of member 0's data again right before
	// the restore replaces it, and raises the bump when that is higher
	// (memberseed.RevisionMargin above it).
	revisionMargin = memberseed.RevisionMargin
)

// SeedCommand is the command of the seed init container in the etcdaas image: etcdaas-controller's
// seed-member step (package memberseed).
var SeedCommand = []string{"/etcdaas-controller", "seed-member"}

// RestoreRequest is a snapshot the API server accepted for an instance, verified and staged
// in the instance's S3 destination; the backend restores the instance from it.
type RestoreRequest struct {
	snapshot.Staged `json:",inline"`
	// S3 is where the snapshot is staged: the instance's destination at the time of the
	// request, with its prefix resolved to the staging area.
	S3 v1beta1.S3Destination `json:"s3"`
	// Key is the snapshot's key below S3.Prefix.
	Key string `json:"key"`
}

// seed is a snapshot member 0 is being built from.
type seed struct {
	// ID identifies the seed: the restore request's ID, or the instance's UID for restoreFrom.
	ID string `json:"id"`
	// Restore is the ID of the restore request carried out, empty for spec.restoreFrom.
	Restore string `json:"restore,omitempty"`
	// S3 and Key locate the snapshot; SHA256 is what it must hash to.
	S3       v1beta1.S3Destination `json:"s3"`
	Key      string                `json:"key"`
	SHA256   string                `json:"sha256"`
	Revision int64                 `json:"revision"`
	// RevisionBump raises the restored revision above the replaced cluster's.
	RevisionBump uint64 `json:"revisionBump,omitempty"`
	// Token is the new cluster's initial cluster token.
	Token string `json:"token"`
	// Replaced is the number of members the replaced cluster had (0 for a new instance).
	Replaced int `json:"replaced,omitempty"`
	// Recover is the surviving member a recovery from quorum loss rebuilds the cluster from;
	// empty for restores, which S3 and Key locate.
	Recover string `json:"recover,omitempty"`
	// RecoverRequest is the ID of the recover request carried out (backend.RecoverRequest.ID).
	RecoverRequest string `json:"recoverRequest,omitempty"`
	// From is the client URL of the survivor member 0 streams its snapshot from; empty when
	// the survivor is member 0, which is rebuilt from its own database.
	From string `json:"from,omitempty"`
	// Seeded is set once member 0 serves the recovered cluster: the pods and volumes of the
	// other members of the replaced cluster are being removed.
	Seeded bool `json:"seeded,omitempty"`
}

// seedOf returns the seed the StatefulSet records, or nil.
func seedOf(annotations map[string]string) (*seed, error) {
	raw, ok := annotations[annotationSeed]
	if !ok {
		return nil, nil
	}
	s := &seed{}
	if err := json.Unmarshal([]byte(raw), s); err != nil {
		return nil, fmt.Errorf("reading annotation %s: %w", annotationSeed, err)
	}
	return s, nil
}

// restoreRequestOf returns the restore request the StatefulSet records, or nil.
func restoreRequestOf(annotations map[string]string) (*RestoreRequest, error) {
	raw, ok := annotations[annotationRestoreRequest]
	if !ok {
		return nil, nil
	}
	r := &RestoreRequest{}
	if err := json.Unmarshal([]byte(raw), r); err != nil {
		return nil, fmt.Errorf("reading annotation %s: %w", annotationRestoreRequest, err)
	}
	return r, nil
}

func (s *seed) annotation() string {
	data, _ := json.Marshal(s) // plain strings and numbers: cannot fail
	return string(data)
}

// seedInitContainer builds member 0's data directory from the seed before etcd starts; in
// any other pod of the StatefulSet it does nothing.
func (b *Backend) seedInitContainer(inst *v1beta1.ETCDInstance, mc memberConfig) corev1.Container {
	if mc.seed.Recover != "" {
		return b.recoverInitContainer(inst, mc)
	}
	s := mc.seed
	args := []string{
		"--id=" + s.ID,
		"--member=" + backend.MemberName(inst.Name, 0),
		"--data-dir=" + dataDir + "/data",
		"--s3-endpoint=" + s.S3.Endpoint,
		"--s3-bucket=" + s.S3.Bucket,
		"--s3-prefix=" + s.S3.Prefix,
		"--s3-region=" + s.S3.Region,
		"--key=" + s.Key,
		"--sha256=" + s.SHA256,
		"--etcd-version=" + etcdMinor(inst),
		"--initial-cluster=" + mc.initialCluster,
		"--initial-cluster-token=" + mc.token,
		fmt.Sprintf("--revision-bump=%d", s.RevisionBump),
	}
	env := []corev1.EnvVar{
		{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
	}
	if ref := s.S3.CredentialsSecretRef; ref != nil {
		secretKey := func(key string) *corev1.EnvVarSource {
			return &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: ref.Name}, Key: key}}
		}
		env = append(env,
			corev1.EnvVar{Name: backup.EnvAccessKeyID, ValueFrom: secretKey(backup.SecretAccessKeyIDKey)},
			corev1.EnvVar{Name: backup.EnvSecretAccessKey, ValueFrom: secretKey(backup.SecretSecretAccessKeyKey)})
	}
	if s.S3.CABundle != "" {
		env = append(env, corev1.EnvVar{Name: "ETCDAAS_S3_CA_BUNDLE", Value: s.S3.CABundle})
	}
	return corev1.Container{
		Name:    seedContainer,
		Image:   b.opts.ToolsImage,
		Command: append(append([]string{}, SeedCommand...), args...),
		Env:     env,
		// The seed step prints its error last: the status quotes it.
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		VolumeMounts:             []corev1.VolumeMount{{Name: dataVolume, MountPath: dataDir}},
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
	}
}

// etcdMinor is the etcd minor version the instance runs.
func etcdMinor(inst *v1beta1.ETCDInstance) string {
	if inst.Spec.Version != "" {
		return inst.Spec.Version
	}
	return etcdaas.DefaultVersion
}

// restoreFromSeed locates the backup spec.restoreFrom names and checks it against the sha256
// its provenance records, before anything of the instance is created.
func (b *Backend) restoreFromSeed(ctx context.Context, inst *v1beta1.ETCDInstance) (*seed, error) {
	if b.opts.RestoreSource == nil || b.opts.ToolsImage == "" {
		return nil, backend.Permanent("RestoreUnavailable",
			"spec.restoreFrom is set, but this controller cannot seed members (it needs access to backups and the etcdaas image, --tools-image): nothing was created")
	}
	located, err := b.opts.RestoreSource.LocateRestoreSource(ctx, inst)
	if err != nil {
		return nil, err
	}
	if err := b.checkBackup(ctx, inst, located.Provenance); err != nil {
		return nil, err
	}
	return &seed{
		ID: string(inst.UID), S3: located.S3, Key: located.Provenance.Key, SHA256: located.Provenance.SHA256,
		Revision: located.Provenance.Revision, Token: clusterToken(inst),
	}, nil
}

// checkBackup reads the backup spec.restoreFrom names through and compares its sha256 with
// the provenance's, so that a backup that changed is refused before a member depends on it.
func (b *Backend) checkBackup(ctx context.Context, inst *v1beta1.ETCDInstance, want backend.BackupProvenance) error {
	// The backup located, by its key: with no key in spec.restoreFrom, the newest one could
	// be a newer backup the source took in between.
	pinned := inst.DeepCopy()
	pinned.Spec.RestoreFrom.Key = want.Key
	body, _, err := b.opts.RestoreSource.OpenRestoreSource(ctx, pinned)
	if err != nil {
		return err
	}
	defer func() { _ = body.Close() }()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, body, make([]byte, 256*1024)); err != nil {
		return fmt.Errorf("reading backup %s of %s: %w", want.Key, inst.Spec.RestoreFrom.Instance, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want.SHA256 {
		return backend.Permanent(backend.ReasonInvalidBackup, "backup %s of %s has sha256 %s, but its provenance records %s: it changed after it was taken",
			want.Key, inst.Spec.RestoreFrom.Instance, got, want.SHA256)
	}
	return nil
}

func clusterToken(inst *v1beta1.ETCDInstance) string {
	return fmt.Sprintf("%s-%s-%s", inst.Namespace, inst.Name, inst.UID)
}

// restoreStep carries out a restore request or a seed under way. It reports whether one was
// under way; the ordinary steps wait until it is done.
func (b *Backend) restoreStep(ctx context.Context, v *instanceView) (*backend.Result, bool, error) {
	req, err := restoreRequestOf(v.sts.Annotations)
	if err != nil {
		return nil, true, err
	}
	s, err := seedOf(v.sts.Annotations)
	if err != nil {
		return nil, true, err
	}
	switch {
	case req != nil && (s == nil || s.Restore != req.ID):
		res, err := b.startRestore(ctx, v, req, s)
		return res, true, err
	case s != nil && s.Recover != "":
		res, err := b.continueRecovery(ctx, v, s)
		return res, true, err
	case s != nil:
		res, err := b.continueSeed(ctx, v, s)
		return res, true, err
	}
	return nil, false, nil
}

// startRestore records the restore as the seed under way and, in the same update, makes the
// StatefulSet one member seeded from the snapshot: the members above 0 stop (their volumes
// go with them), member 0 restarts through its init container, which replaces its data only
// once the snapshot is checked.
//
// A seed still under way (a restore taken over by a newer one) keeps its count of replaced
// members: the volumes it has not discarded yet must be discarded by this one too.
func (b *Backend) startRestore(ctx context.Context, v *instanceView, req *RestoreRequest, current *seed) (*backend.Result, error) {
	inst := v.inst
	res := &backend.Result{
		Members:    v.podMembers(),
		Step:       fmt.Sprintf("restoring the snapshot of revision %d (%d keys) into member %s", req.Info.Revision, req.Info.TotalKeys, backend.MemberName(inst.Name, 0)),
		StepReason: backend.StepRestoring,
	}
	if b.opts.ToolsImage == "" {
		return res, backend.Permanent("RestoreUnavailable", "a restore was requested, but this controller does not know the etcdaas image that seeds members (--tools-image)")
	}
	s := &seed{
		ID: req.ID, Restore: req.ID, S3: req.S3, Key: req.Key, SHA256: req.Info.SHA256, Revision: req.Info.Revision,
		RevisionBump: b.revisionBump(ctx, v, req.Info.Revision),
		Token:        fmt.Sprintf("%s-restore-%s", clusterToken(inst), req.ID),
		Replaced:     v.replicas(),
	}
	if current != nil {
		s.Replaced = max(s.Replaced, current.Replaced)
	}
	want := v.statefulSet(b.seedConfig(inst, s))
	err := b.updateStatefulSet(ctx, v, func(updated *appsv1.StatefulSet) {
		seedStatefulSet(updated, want.Spec.Replicas, want.Spec.Template, s)
	})
	if err != nil {
		return res, err
	}
	return res, b.ensurePDB(ctx, inst, 1)
}

// seedConfig is the configuration of a StatefulSet whose member 0 is seeded by s.
func (b *Backend) seedConfig(inst *v1beta1.ETCDInstance, s *seed) memberConfig {
	return memberConfig{
		replicas:       1,
		initialCluster: backend.MemberName(inst.Name, 0) + "=" + b.peerURL(inst, 0),
		clusterState:   "new",
		token:          s.Token,
		seed:           s,
	}
}

// revisionBump is how far to raise the restored revision so that it passes the revision the
// running cluster reached; the fallback when no member answers.
func (b *Backend) revisionBump(ctx context.Context, v *instanceView, snapRevision int64) uint64 {
	access, err := b.Access(ctx, v.inst.Namespace, v.inst.Name)
	if err != nil {
		return fallbackRevisionBump
	}
	cluster, err := b.connect(access)
	if err != nil {
		return fallbackRevisionBump
	}
	defer func() { _ = cluster.Close() }()
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var highest int64
	for _, st := range cluster.Statuses(sctx) {
		if st.Err == nil && st.MemberID != 0 {
			highest = max(highest, st.Revision)
		}
	}
	if highest == 0 {
		return fallbackRevisionBump
	}
	return uint64(max(highest-snapRevision, 0)) + revisionMargin
}

// continueSeed waits for the members of the replaced cluster to stop, restarts member 0 with
// its init container, and once member 0 serves as the only member of the new cluster, ends
// the seed: later Syncs add the other members back as learners.
func (b *Backend) continueSeed(ctx context.Context, v *instanceView, s *seed) (*backend.Result, error) {
	inst := v.inst
	first := backend.MemberName(inst.Name, 0)
	res := &backend.Result{Members: v.podMembers(), StepReason: backend.StepRestoring,
		Step: fmt.Sprintf("restoring the snapshot of revision %d into member %s", s.Revision, first)}
	if s.Restore == "" {
		res.StepReason = backend.StepDeploying
		res.Step = fmt.Sprintf("seeding member %s from backup %s of %s", first, s.Key, inst.Spec.RestoreFrom.Instance)
	}
	pods := b.opts.Client.CoreV1().Pods(inst.Namespace)
	for o := 1; o < s.Replaced; o++ {
		_, err := pods.Get(ctx, backend.MemberName(inst.Name, o), metav1.GetOptions{})
		if err == nil {
			res.Step += fmt.Sprintf(": waiting for member %s of the replaced cluster to stop", backend.MemberName(inst.Name, o))
			return res, nil
		}
		if !apierrors.IsNotFound(err) {
			return res, err
		}
		// Its data must never come back with a later member of that ordinal.
		if err := b.deleteVolume(ctx, inst, o); err != nil {
			return res, err
		}
	}
	// Member 0 of the replaced cluster stops; its pod comes back seeded.
	if running, err := b.restartSeeded(ctx, v, s, res); err != nil || !running {
		return res, err
	}
	return res, b.endSeed(ctx, v, s, res)
}

// endSeed forgets the seed (and the restore request it carried out) and takes the init
// container out of the pod template; member 0 keeps running the restored data.
func (b *Backend) endSeed(ctx context.Context, v *instanceView, s *seed, res *backend.Result) error {
	inst := v.inst
	mc := b.seedConfig(inst, s)
	mc.seed, mc.clusterState = nil, "existing"
	want := v.statefulSet(mc)
	err := b.updateStatefulSet(ctx, v, func(updated *appsv1.StatefulSet) {
		updated.Spec.Template = want.Spec.Template
		delete(updated.Annotations, annotationSeed)
		if req, err := restoreRequestOf(updated.Annotations); err == nil && req != nil && req.ID == s.Restore {
			delete(updated.Annotations, annotationRestoreRequest)
		}
	})
	if err != nil {
		return err
	}
	first := backend.MemberName(inst.Name, 0)
	if s.Restore != "" {
		res.Step = fmt.Sprintf("restored the snapshot of revision %d into member %s; the other members join again as learners", s.Revision, first)
		res.Record(backend.ReasonRestored, "Restored the snapshot of revision %d (restore %s) into member %s, a new cluster; %d more members join it as learners",
			s.Revision, s.Restore, first, backend.DesiredReplicas(inst)-1)
		return nil
	}
	res.Step = fmt.Sprintf("seeded member %s from backup %s", first, s.Key)
	res.Record(backend.ReasonRestored, "Started member %s from backup %s of %s (revision %d)", first, s.Key, inst.Spec.RestoreFrom.Instance, s.Revision)
	return nil
}

func podReady(pod *corev1.Pod) bool {
	if pod.DeletionTimestamp != nil {
		return false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// seedStatefulSet gives updated replicas members, the pod template whose init container builds
// member 0 from s, and the record of s. A seed replaces every member: what was recorded about
// the old ones (a version roll's step, their volumes and IDs, a replacement) no longer
// describes the cluster, and would hold up or misdirect the steps that grow the new one.
func seedStatefulSet(updated *appsv1.StatefulSet, replicas *int32, template corev1.PodTemplateSpec, s *seed) {
	updated.Spec.Replicas, updated.Spec.Template = replicas, template
	if updated.Annotations == nil {
		updated.Annotations = map[string]string{}
	}
	updated.Annotations[annotationSeed] = s.annotation()
	updated.Annotations[annotationClusterToken] = s.Token
	for _, stale := range []string{annotationRollStep, annotationMemberVolumes, annotationReplacement} {
		delete(updated.Annotations, stale)
	}
}
