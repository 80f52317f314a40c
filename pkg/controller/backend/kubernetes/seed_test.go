package kubernetes

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/backup"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
	"github.com/etcdaas/etcdaas/pkg/snapshot"
)

const toolsImage = "registry.test/etcdaas:v9"

// fakeSource is a backup in an S3 destination whose provenance records sum. With newer set,
// the source took a newer backup (those bytes) right after the first was located: opening
// "the newest" (no key) gives that one.
type fakeSource struct {
	data      string
	sum       string
	newer     string
	locateErr error
}

const fakeSourceKey = "20261129T000000.000Z-r42.db"

func (f fakeSource) OpenRestoreSource(_ context.Context, inst *v1beta1.ETCDInstance) (io.ReadCloser, *backend.BackupProvenance, error) {
	if f.newer != "" && inst.Spec.RestoreFrom.Key == "" {
		return io.NopCloser(strings.NewReader(f.newer)), &backend.BackupProvenance{Key: "20261129T010000.000Z-r50.db", SHA256: sum(f.newer), Revision: 50}, nil
	}
	return io.NopCloser(strings.NewReader(f.data)), &backend.BackupProvenance{Key: fakeSourceKey, SHA256: f.sum, Revision: 42}, nil
}

func (f fakeSource) LocateRestoreSource(ctx context.Context, inst *v1beta1.ETCDInstance) (*backend.RemoteBackup, error) {
	if f.locateErr != nil {
		return nil, f.locateErr
	}
	return &backend.RemoteBackup{
		S3:         v1beta1.S3Destination{Endpoint: "http://s3.test:8333", Bucket: "backups", Prefix: "ns/old/", CredentialsSecretRef: &v1beta1.SecretReference{Name: "s3-creds"}},
		Provenance: backend.BackupProvenance{Key: fakeSourceKey, SHA256: f.sum, Revision: 42},
	}, nil
}

// TestRestoreFromChecksTheBackupItLocated: a backup the source takes between locating the
// newest and checking it does not make the located one look changed.
func TestRestoreFromChecksTheBackupItLocated(t *testing.T) {
	data := "snapshot bytes"
	b := newSeedBackend(t, fake.NewClientset(), fakeSource{data: data, sum: sum(data), newer: "newer bytes"}, healthyCluster(1))
	s, err := b.restoreFromSeed(context.Background(), restoreFromInstance())
	if err != nil {
		t.Fatalf("restoreFrom refused while its source took a newer backup: %v", err)
	}
	if s.Key != fakeSourceKey || s.SHA256 != sum(data) {
		t.Errorf("seed %+v, want the located backup %s", s, fakeSourceKey)
	}
}

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func restoreFromInstance() *v1beta1.ETCDInstance {
	inst := testInstance()
	inst.Spec.TLS = nil
	inst.Spec.RestoreFrom = &v1beta1.RestoreSource{Instance: "old"}
	return inst
}

func newSeedBackend(t *testing.T, client *fake.Clientset, source backend.RemoteRestoreSource, cluster *fakeMembership) *Backend {
	t.Helper()
	b, err := New(Options{Client: client, ToolsImage: toolsImage, RestoreSource: source})
	if err != nil {
		t.Fatal(err)
	}
	b.connect = func(*etcdcluster.Access) (membership, error) { return cluster, nil }
	return b
}

func arg(t *testing.T, c corev1.Container, name string) string {
	t.Helper()
	for _, a := range c.Command {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	t.Fatalf("no --%s in %v", name, c.Command)
	return ""
}

// seedContainerOf returns the StatefulSet's seed init container, or nil.
func seedContainerOf(t *testing.T, client *fake.Clientset) (*corev1.Container, map[string]string) {
	t.Helper()
	sts, err := client.AppsV1().StatefulSets("ns").Get(context.Background(), "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range sts.Spec.Template.Spec.InitContainers {
		if c.Name == seedContainer {
			return &sts.Spec.Template.Spec.InitContainers[i], sts.Annotations
		}
	}
	return nil, sts.Annotations
}

func readyPod(name, seedID string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
		Status:     corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
	if seedID != "" {
		p.Annotations = map[string]string{annotationPodSeed: seedID}
	}
	return p
}

// spec.restoreFrom: the StatefulSet is created with one member whose init container seeds it
// from the backup, checked first; once it runs, the seed ends and members join as learners.
func TestRestoreFromSeedsTheFirstMember(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	data := "snapshot bytes"
	b := newSeedBackend(t, client, fakeSource{data: data, sum: sum(data)}, healthyCluster(1))
	inst := restoreFromInstance()

	res, err := b.Sync(ctx, inst)
	if err != nil {
		t.Fatal(err)
	}
	if res.StepReason != backend.StepDeploying || !strings.Contains(res.Step, "from backup 20261129T000000.000Z-r42.db of old") {
		t.Fatalf("step = %s %q", res.StepReason, res.Step)
	}
	c, annotations := seedContainerOf(t, client)
	if c == nil {
		t.Fatal("the StatefulSet has no seed init container")
	}
	checkRestoreSeedContainer(t, c, sum(data))
	s, err := seedOf(annotations)
	if err != nil || s == nil || s.ID != "uid-1" || s.Restore != "" {
		t.Fatalf("recorded seed = %+v, %v", s, err)
	}

	checkSeedTroubleQuoted(t, b, client, inst)

	// Member 0 runs the restored data: the seed ends, the init container goes.
	if _, err := client.CoreV1().Pods("ns").Update(ctx, readyPod("db-0", "uid-1"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err = b.Sync(ctx, inst)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Events) != 1 || res.Events[0].Reason != backend.ReasonRestored {
		t.Fatalf("events = %+v, want Restored", res.Events)
	}
	if c, annotations := seedContainerOf(t, client); c != nil || annotations[annotationSeed] != "" {
		t.Fatalf("the seed is still there after it ended: %v %v", c, annotations)
	}
	// From now on the ordinary steps grow the cluster.
	if _, err := b.Sync(ctx, inst); err != nil {
		t.Fatal(err)
	}
}

// checkRestoreSeedContainer checks the seed init container c of a restore from backup
// 20261129T000000.000Z-r42.db of instance old (checksum sum): the tools image running
// SeedCommand, its arguments, the S3 credentials from the Secret and the data volume.
func checkRestoreSeedContainer(t *testing.T, c *corev1.Container, sum string) {
	t.Helper()
	if c.Image != toolsImage || !slices.Equal(c.Command[:2], SeedCommand) {
		t.Errorf("seed container runs %s %v, want the tools image and %v", c.Image, c.Command, SeedCommand)
	}
	for name, want := range map[string]string{
		"member": "db-0", "key": "20261129T000000.000Z-r42.db", "sha256": sum, "s3-prefix": "ns/old/",
		"s3-endpoint": "http://s3.test:8333", "s3-bucket": "backups", "data-dir": "/var/lib/etcd/data",
		"initial-cluster": "db-0=http://db-0.db-peers.ns.svc.cluster.local:2380", "initial-cluster-token": "ns-db-uid-1",
		"revision-bump": "0", "etcd-version": etcdaas.DefaultVersion,
	} {
		if got := arg(t, *c, name); got != want {
			t.Errorf("--%s = %q, want %q", name, got, want)
		}
	}
	var fromSecret []string
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == "s3-creds" {
			fromSecret = append(fromSecret, e.Name+"="+e.ValueFrom.SecretKeyRef.Key)
		}
	}
	slices.Sort(fromSecret)
	if want := []string{backup.EnvAccessKeyID + "=accessKeyID", backup.EnvSecretAccessKey + "=secretAccessKey"}; !slices.Equal(fromSecret, want) {
		t.Errorf("credentials from the Secret: %v, want %v", fromSecret, want)
	}
	if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].Name != dataVolume {
		t.Errorf("seed container mounts %v, want the data volume", c.VolumeMounts)
	}
}

// checkSeedTroubleQuoted checks that while member 0 is not ready yet, the seed is under way
// and its init container's trouble is quoted in Unhealthy.
func checkSeedTroubleQuoted(t *testing.T, b *Backend, client *fake.Clientset, inst *v1beta1.ETCDInstance) {
	t.Helper()
	ctx := context.Background()
	stuck := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db-0", Annotations: map[string]string{annotationPodSeed: "uid-1"}},
		Status: corev1.PodStatus{InitContainerStatuses: []corev1.ContainerStatus{{
			Name:                 seedContainer,
			State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
			LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Message: "opening key: S3 access denied\n"}},
		}}}}
	if _, err := client.CoreV1().Pods("ns").Create(ctx, stuck, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err := b.Sync(ctx, inst)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.Unhealthy, "container seed CrashLoopBackOff") || !strings.Contains(res.Unhealthy, "S3 access denied") {
		t.Fatalf("unhealthy = %q, want the seed container's failure", res.Unhealthy)
	}
}

func TestRestoreFromRefusesBeforeCreatingAnything(t *testing.T) {
	data := "snapshot bytes"
	for name, tc := range map[string]struct {
		source backend.RemoteRestoreSource
		tools  string
		reason string
	}{
		"a backup whose sha256 changed": {fakeSource{data: data, sum: sum("other bytes")}, toolsImage, "InvalidBackup"},
		"a local destination":           {fakeSource{locateErr: backend.Permanent("RestoreSourceUnreachable", "local")}, toolsImage, "RestoreSourceUnreachable"},
		"no tools image":                {fakeSource{data: data, sum: sum(data)}, "", "RestoreUnavailable"},
		"no access to backups":          {nil, toolsImage, "RestoreUnavailable"},
	} {
		t.Run(name, func(t *testing.T) {
			client := fake.NewClientset()
			b, err := New(Options{Client: client, ToolsImage: tc.tools, RestoreSource: tc.source})
			if err != nil {
				t.Fatal(err)
			}
			_, err = b.Sync(context.Background(), restoreFromInstance())
			pe, ok := backend.IsPermanent(err)
			if !ok || pe.Reason != tc.reason {
				t.Fatalf("Sync = %v, want a permanent %s", err, tc.reason)
			}
			_, err = client.AppsV1().StatefulSets("ns").Get(context.Background(), "db", metav1.GetOptions{})
			if !apierrors.IsNotFound(err) {
				t.Fatalf("a StatefulSet was created: %v", err)
			}
		})
	}
}

// requestRestore records a restore request on the StatefulSet as the API server's Stager does.
func requestRestore(t *testing.T, client *fake.Clientset, id string) {
	t.Helper()
	ctx := context.Background()
	sts, err := client.AppsV1().StatefulSets("ns").Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	req := RestoreRequest{
		Staged: snapshot.Staged{ID: id, InstanceUID: "uid-1", Info: snapshot.Info{Revision: 40, TotalKeys: 7, SHA256: sum("snap")}, RequestedAt: time.Now()},
		S3:     v1beta1.S3Destination{Endpoint: "http://s3.test:8333", Bucket: "backups", Prefix: "ns/db/restores/", CredentialsSecretRef: &v1beta1.SecretReference{Name: "creds"}},
		Key:    "20261129T000000.000Z-r40.db",
	}
	data, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	sts.Annotations[annotationRestoreRequest] = string(data)
	if _, err := client.AppsV1().StatefulSets("ns").Update(ctx, sts, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// A restore request: the StatefulSet becomes one member seeded from the staged snapshot with a
// new cluster token and a revision above the running cluster's; member 0 restarts only after
// that is recorded, the other members' volumes go once their pods are gone, and the request
// is consumed once member 0 runs the restored data.
func TestRestoreRequestReseedsMemberZero(t *testing.T) {
	ctx := context.Background()
	cluster := healthyCluster(3)
	for i := range cluster.statuses {
		cluster.statuses[i].Revision = 900 + int64(i)
	}
	f := newStepsFixture(t, 3, 3, 3, cluster)
	f.b.opts.ToolsImage = toolsImage
	for i := range 3 {
		if _, err := f.client.CoreV1().Pods("ns").Create(ctx, readyPod(fmt.Sprintf("db-%d", i), ""), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	requestRestore(t, f.client, "r1")
	// What the old cluster's steps recorded: a version roll's step, its members' volumes.
	old, err := f.client.AppsV1().StatefulSets("ns").Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	old.Annotations[annotationRollStep] = `{"member":"db-2"}`
	old.Annotations[annotationMemberVolumes] = `{"db-1":{"id":"1"}}`
	if _, err := f.client.AppsV1().StatefulSets("ns").Update(ctx, old, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	checkRestorePlanRecorded(t, ctx, f)
	checkOldClusterStopped(t, ctx, f)
	checkRestoreCompletes(t, ctx, f)
}

// checkRestorePlanRecorded syncs once and checks the recorded plan: one member seeded from
// the snapshot with a new cluster token and a revision bump, the old cluster's records gone,
// member 0 still running.
func checkRestorePlanRecorded(t *testing.T, ctx context.Context, f *stepsFixture) {
	t.Helper()
	res, err := f.b.Sync(ctx, f.inst)
	if err != nil {
		t.Fatal(err)
	}
	if res.StepReason != backend.StepRestoring {
		t.Fatalf("step reason = %s, want Restoring", res.StepReason)
	}
	sts, err := f.client.AppsV1().StatefulSets("ns").Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := seedOf(sts.Annotations)
	if err != nil || s == nil || s.Restore != "r1" || s.Replaced != 3 {
		t.Fatalf("seed = %+v, %v", s, err)
	}
	if want := uint64(902 - 40 + revisionMargin); s.RevisionBump != want {
		t.Errorf("revision bump = %d, want %d (the highest member revision 902 above the snapshot's 40, and the margin)", s.RevisionBump, want)
	}
	for _, stale := range []string{annotationRollStep, annotationMemberVolumes} {
		if _, ok := sts.Annotations[stale]; ok {
			t.Errorf("the restore kept the old cluster's %s record", stale)
		}
	}
	if *sts.Spec.Replicas != 1 || sts.Annotations[annotationClusterToken] != "ns-db-uid-1-restore-r1" {
		t.Errorf("replicas %d, token %q: want 1 member of a new cluster", *sts.Spec.Replicas, sts.Annotations[annotationClusterToken])
	}
	c, _ := seedContainerOf(t, f.client)
	if c == nil || arg(t, *c, "initial-cluster-token") != "ns-db-uid-1-restore-r1" || arg(t, *c, "s3-prefix") != "ns/db/restores/" ||
		arg(t, *c, "revision-bump") != fmt.Sprint(s.RevisionBump) {
		t.Fatalf("seed container = %+v", c)
	}
	if env(t, sts.Spec.Template.Spec.Containers[0], "ETCD_INITIAL_CLUSTER_STATE") != "new" {
		t.Error("member 0 must start a new cluster from the restored data")
	}
	if _, err := f.client.CoreV1().Pods("ns").Get(ctx, "db-0", metav1.GetOptions{}); err != nil {
		t.Fatalf("member 0 was stopped in the step that recorded the plan: %v", err)
	}
}

// checkOldClusterStopped checks that member 0 of the old cluster is stopped once its peers
// are gone, and that only the replaced members' volumes go.
func checkOldClusterStopped(t *testing.T, ctx context.Context, f *stepsFixture) {
	t.Helper()
	// Next: member 0 of the old cluster is stopped, while its peers go away.
	if _, err := f.b.Sync(ctx, f.inst); err != nil {
		t.Fatal(err)
	}
	if _, err := f.client.CoreV1().Pods("ns").Get(ctx, "db-0", metav1.GetOptions{}); err == nil {
		// The old peers still run: waiting for them comes first.
		for _, p := range []string{"db-1", "db-2"} {
			if err := f.client.CoreV1().Pods("ns").Delete(ctx, p, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := f.b.Sync(ctx, f.inst); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.client.CoreV1().Pods("ns").Get(ctx, "db-0", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("member 0 of the old cluster still runs: %v", err)
	}
	for _, pvc := range []string{"data-db-1", "data-db-2"} {
		if _, err := f.client.CoreV1().PersistentVolumeClaims("ns").Get(ctx, pvc, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("volume %s of a replaced member is still there: %v", pvc, err)
		}
	}
	if _, err := f.client.CoreV1().PersistentVolumeClaims("ns").Get(ctx, "data-db-0", metav1.GetOptions{}); err != nil {
		t.Errorf("member 0's volume must stay (its seed replaces the data once checked): %v", err)
	}
}

// checkRestoreCompletes checks that member 0, back and ready with the restored data, ends
// the restore: a Restored event, the request consumed, the seed ended.
func checkRestoreCompletes(t *testing.T, ctx context.Context, f *stepsFixture) {
	t.Helper()
	// The StatefulSet brings member 0 back seeded; once ready, the restore is done.
	if _, err := f.client.CoreV1().Pods("ns").Create(ctx, readyPod("db-0", "r1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err := f.b.Sync(ctx, f.inst)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Events) != 1 || res.Events[0].Reason != backend.ReasonRestored || !strings.Contains(res.Events[0].Note, "revision 40") {
		t.Fatalf("events = %+v, want Restored", res.Events)
	}
	sts, err := f.client.AppsV1().StatefulSets("ns").Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := sts.Annotations[annotationRestoreRequest]; ok {
		t.Error("the restore request was not consumed")
	}
	if _, ok := sts.Annotations[annotationSeed]; ok || len(sts.Spec.Template.Spec.InitContainers) != 0 {
		t.Error("the seed was not ended")
	}
}

func TestRestoreRequestNeedsTheToolsImage(t *testing.T) {
	f := newStepsFixture(t, 3, 3, 3, healthyCluster(3))
	requestRestore(t, f.client, "r1")
	_, err := f.b.Sync(context.Background(), f.inst)
	if pe, ok := backend.IsPermanent(err); !ok || pe.Reason != "RestoreUnavailable" {
		t.Fatalf("Sync = %v, want a permanent RestoreUnavailable", err)
	}
	sts, err := f.client.AppsV1().StatefulSets("ns").Get(context.Background(), "db", metav1.GetOptions{})
	if err != nil || *sts.Spec.Replicas != 3 || sts.Annotations[annotationSeed] != "" {
		t.Fatalf("the StatefulSet changed: %v", err)
	}
}

// The API server's side: an instance without an S3 destination, or one it cannot use as
// configured (credentials, caBundle), one not deployed and one with a restore pending are
// refused before the body is read.
func TestStagerRefusesWhatItCannotRestore(t *testing.T) {
	ctx := context.Background()
	f := newStepsFixture(t, 3, 3, 3, healthyCluster(3))
	creds := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "creds"},
		Data: map[string][]byte{backup.SecretAccessKeyIDKey: []byte("id"), backup.SecretSecretAccessKeyKey: []byte("secret")}}
	if _, err := f.client.CoreV1().Secrets("ns").Create(ctx, creds, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	stager := Stager{Client: f.client, Resolver: &backup.Resolver{Credentials: backup.SecretCredentials{Client: f.client}}, Dir: t.TempDir()}
	internal := func(dest *etcdaas.BackupSpec, name string) *etcdaas.ETCDInstance {
		return &etcdaas.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: "uid-1"}, Spec: etcdaas.ETCDInstanceSpec{Backup: dest}}
	}
	s3 := func(secret string) *etcdaas.BackupSpec {
		return &etcdaas.BackupSpec{Destination: etcdaas.BackupDestination{S3: &etcdaas.S3Destination{
			Endpoint: "http://s3.test:8333", Bucket: "b", CredentialsSecretRef: &etcdaas.SecretReference{Name: secret}}}}
	}
	for name, tc := range map[string]struct {
		inst *etcdaas.ETCDInstance
		want error
	}{
		"no backup destination": {internal(nil, "db"), snapshot.ErrCannotStage},
		"a local destination":   {internal(&etcdaas.BackupSpec{Destination: etcdaas.BackupDestination{Local: &etcdaas.LocalDestination{}}}, "db"), snapshot.ErrCannotStage},
		"credentials missing":   {internal(s3("nope"), "db"), snapshot.ErrCannotStage},
		"a caBundle without a certificate": {func() *etcdaas.ETCDInstance {
			spec := s3("creds")
			spec.Destination.S3.CABundle = "not PEM"
			return internal(spec, "db")
		}(), snapshot.ErrCannotStage},
		"not deployed":          {internal(s3("creds"), "other"), etcdcluster.ErrNoMembers},
		"an earlier instance's": {func() *etcdaas.ETCDInstance { i := internal(s3("creds"), "db"); i.UID = "uid-2"; return i }(), etcdcluster.ErrNoMembers},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := stager.SpoolDir(ctx, tc.inst); !errors.Is(err, tc.want) {
				t.Fatalf("SpoolDir = %v, want %v", err, tc.want)
			}
		})
	}
	// A receipt a crash cut short left its spool file: the next receipt's SpoolDir deletes it
	// once stale, and keeps one still being written.
	spoolDir := filepath.Join(stager.Dir, "etcdaas-restores")
	if err := os.MkdirAll(spoolDir, 0o700); err != nil {
		t.Fatal(err)
	}
	stale, live := filepath.Join(spoolDir, "snapshot-1.part"), filepath.Join(spoolDir, "snapshot-2.part")
	for _, p := range []string{stale, live} {
		if err := os.WriteFile(p, []byte("half"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * snapshot.StaleSpoolAge)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	if dir, err := stager.SpoolDir(ctx, internal(s3("creds"), "db")); err != nil || dir != spoolDir {
		t.Fatalf("a deployed instance with an S3 destination: %q, %v", dir, err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the stale spool file is still there: %v", err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("the spool file being written was deleted: %v", err)
	}
	requestRestore(t, f.client, "r1")
	if _, err := stager.SpoolDir(ctx, internal(s3("creds"), "db")); !errors.Is(err, snapshot.ErrRestorePending) {
		t.Fatalf("with a restore pending: %v, want ErrRestorePending", err)
	}
}

// A restore requested while another is still under way takes it over, and still discards the
// volumes of every member the first one replaced, although the StatefulSet has one member now.
func TestANewerRestoreKeepsTheMembersToDiscard(t *testing.T) {
	ctx := context.Background()
	f := newStepsFixture(t, 3, 3, 3, healthyCluster(3))
	f.b.opts.ToolsImage = toolsImage
	requestRestore(t, f.client, "r1")
	if _, err := f.b.Sync(ctx, f.inst); err != nil {
		t.Fatal(err)
	}
	requestRestore(t, f.client, "r2")
	if _, err := f.b.Sync(ctx, f.inst); err != nil {
		t.Fatal(err)
	}
	sts, err := f.client.AppsV1().StatefulSets("ns").Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s, err := seedOf(sts.Annotations); err != nil || s == nil || s.Restore != "r2" || s.Replaced != 3 || *sts.Spec.Replicas != 1 {
		t.Fatalf("seed = %+v, %v, %d replicas: want r2 replacing 3 members", s, err, *sts.Spec.Replicas)
	}
}
