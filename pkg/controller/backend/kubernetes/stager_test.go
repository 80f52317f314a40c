package kubernetes

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clienttesting "k8s.io/client-go/testing"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/backup"
	"github.com/etcdaas/etcdaas/pkg/memberseed"
	"github.com/etcdaas/etcdaas/pkg/snapshot"
	"github.com/etcdaas/etcdaas/pkg/snapshot/snapshottest"
	"github.com/etcdaas/etcdaas/test/s3server"
)

// TestStageThroughS3 stages a verified snapshot in a real S3 server as the API server does:
// it lands below the instance's restores/ prefix with its provenance, never among its backups,
// the request is recorded on the StatefulSet, a second request is refused and its upload
// deleted, and the seed step reads the staged snapshot back into a member's data directory
// with what the request records.
func TestStageThroughS3(t *testing.T) {
	ctx := context.Background()
	store := s3server.Start(t)
	f := newStepsFixture(t, 3, 3, 3, healthyCluster(3))
	creds := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "creds"},
		Data: map[string][]byte{backup.SecretAccessKeyIDKey: []byte(store.AccessKeyID), backup.SecretSecretAccessKeyKey: []byte(store.SecretAccessKey)}}
	if _, err := f.client.CoreV1().Secrets("ns").Create(ctx, creds, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	resolver := &backup.Resolver{Credentials: backup.SecretCredentials{Client: f.client}}
	stager := Stager{Client: f.client, Resolver: resolver, Dir: t.TempDir()}
	inst := &etcdaas.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db", UID: "uid-1"},
		Spec: etcdaas.ETCDInstanceSpec{Backup: &etcdaas.BackupSpec{Destination: etcdaas.BackupDestination{S3: &etcdaas.S3Destination{
			Endpoint: store.Endpoint, Bucket: store.Bucket, CredentialsSecretRef: &etcdaas.SecretReference{Name: "creds"}}}}}}

	first, firstPath := receiveSpooled(t, stager, inst, "r1")
	second, secondPath := receiveSpooled(t, stager, inst, "r2")
	if err := stager.Stage(ctx, inst, first, firstPath); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(firstPath); !os.IsNotExist(err) {
		t.Errorf("the spooled file is still there after staging: %v", err)
	}
	if p := inst.Spec.Backup.Destination.S3.Prefix; p != "" {
		t.Fatalf("staging changed the instance's prefix to %q", p)
	}
	if err := stager.Stage(ctx, inst, second, secondPath); !errors.Is(err, snapshot.ErrRestorePending) || !strings.Contains(err.Error(), "restore r1") {
		t.Fatalf("a second restore: %v, want ErrRestorePending naming restore r1", err)
	}

	sts, err := f.client.AppsV1().StatefulSets("ns").Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	req, err := restoreRequestOf(sts.Annotations)
	if err != nil || req == nil || req.ID != "r1" || req.S3.Prefix != "ns/db/"+RestoresPrefix+"r1/" || req.Info.SHA256 != first.Info.SHA256 {
		t.Fatalf("recorded request = %+v, %v", req, err)
	}
	staging := checkOnlyFirstStaged(t, resolver, req, first)

	// The seed step, given what the request records, builds a data directory from it.
	data := filepath.Join(t.TempDir(), "data")
	m := snapshot.Member{Name: "db-0", PeerURL: "http://db-0.db-peers.ns.svc.cluster.local:2380"}
	res, err := memberseed.Seed(ctx, memberseed.Config{ID: req.ID, Source: staging, Key: req.Key, SHA256: req.Info.SHA256,
		DataDir: data, Member: m, Cluster: []snapshot.Member{m}, ClusterToken: "t", RevisionBump: 100})
	if err != nil {
		t.Fatal(err)
	}
	if res.Info.TotalKeys != first.Info.TotalKeys {
		t.Errorf("seeded %d keys, want %d", res.Info.TotalKeys, first.Info.TotalKeys)
	}
}

// receiveSpooled writes a snapshot (key k set to id) into the stager's spool directory for
// inst, as the API server receives one, and returns it verified, with its path.
func receiveSpooled(t *testing.T, stager Stager, inst *etcdaas.ETCDInstance, id string) (*snapshot.Staged, string) {
	t.Helper()
	ctx := context.Background()
	spool, err := stager.SpoolDir(ctx, inst)
	if err != nil {
		t.Fatal(err)
	}
	path := snapshottest.Make(t, spool, id+".db", map[string]string{"k": id})
	info, err := snapshot.Verify(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	return &snapshot.Staged{ID: id, InstanceUID: "uid-1", Info: *info, RequestedAt: time.Now().UTC()}, path
}

// checkOnlyFirstStaged checks that only the first upload (req, first) is left in the staging
// area, with its provenance, and that the instance's backups do not include it. It returns
// the staging area.
func checkOnlyFirstStaged(t *testing.T, resolver *backup.Resolver, req *RestoreRequest, first *snapshot.Staged) backup.Destination {
	t.Helper()
	ctx := context.Background()
	staging, err := resolver.Destination(ctx, "ns", "db", v1beta1Dest(req))
	if err != nil {
		t.Fatal(err)
	}
	staged, err := staging.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(staged) != 1 || staged[0].Key != req.Key || staged[0].SHA256 != first.Info.SHA256 || staged[0].InstanceUID != "uid-1" {
		t.Fatalf("staging area holds %+v, want only %s", staged, req.Key)
	}
	// The instance's backups do not include it.
	instDest := v1beta1Dest(req)
	instDest.S3.Prefix = "ns/db/"
	backups, err := resolver.Destination(ctx, "ns", "db", instDest)
	if err != nil {
		t.Fatal(err)
	}
	if listed, err := backups.List(ctx); err != nil || len(listed) != 0 {
		t.Fatalf("the instance's backups: %+v, %v; want none", listed, err)
	}
	return staging
}

// v1beta1Dest is the staging area a request records, as a destination to resolve.
func v1beta1Dest(req *RestoreRequest) v1beta1.BackupDestination {
	s3 := req.S3
	return v1beta1.BackupDestination{S3: &s3}
}

// TestStagerDestinationErrorClasses: the stager keeps the class of what its destination
// answered, so that the API server answers by who can fix it. A credentials Secret the
// Kubernetes API cannot give for now (unavailable, a timeout) is ErrStoreUnavailable, never
// snapshot.ErrCannotStage (the instance can be restored as configured: only later), both before
// the body is read (SpoolDir) and when staging; a store that does not answer the upload is
// ErrStoreUnavailable; a bucket that does not exist is ErrMisconfigured. No request is recorded
// on the StatefulSet and nothing is left in the bucket.
func TestStagerDestinationErrorClasses(t *testing.T) {
	store := s3server.Start(t)
	for _, secretErr := range []error{
		apierrors.NewServiceUnavailable("etcd is down"),
		apierrors.NewTimeoutError("request did not complete within requested timeout", 0),
	} {
		t.Run("Secret read: "+secretErr.Error(), func(t *testing.T) {
			ctx := context.Background()
			f := newStepsFixture(t, 3, 3, 3, healthyCluster(3))
			f.client.PrependReactor("get", "secrets", func(clienttesting.Action) (bool, runtime.Object, error) {
				return true, nil, secretErr
			})
			stager := Stager{Client: f.client, Resolver: &backup.Resolver{Credentials: backup.SecretCredentials{Client: f.client}}, Dir: t.TempDir()}
			inst := stagerInstance(store.Endpoint, store.Bucket, &etcdaas.SecretReference{Name: "creds"})
			_, err := stager.SpoolDir(ctx, inst)
			if !errors.Is(err, backup.ErrStoreUnavailable) || errors.Is(err, snapshot.ErrCannotStage) {
				t.Errorf("SpoolDir = %v, want ErrStoreUnavailable and not ErrCannotStage", err)
			}
			staged, path := stagerSnapshot(t)
			err = stager.Stage(ctx, inst, staged, path)
			if !errors.Is(err, backup.ErrStoreUnavailable) || errors.Is(err, snapshot.ErrCannotStage) {
				t.Errorf("Stage = %v, want ErrStoreUnavailable and not ErrCannotStage", err)
			}
			checkNothingStaged(t, f, store, "ns/db/")
		})
	}
	upload := func(t *testing.T, endpoint, bucket string) error {
		t.Helper()
		f := newStepsFixture(t, 3, 3, 3, healthyCluster(3))
		stager := Stager{Client: f.client, Resolver: &backup.Resolver{Credentials: backup.EnvCredentials{Lookup: func(name string) (string, bool) {
			return map[string]string{backup.EnvAccessKeyID: store.AccessKeyID, backup.EnvSecretAccessKey: store.SecretAccessKey}[name], true
		}}}, Dir: t.TempDir()}
		inst := stagerInstance(endpoint, bucket, nil)
		// The store's client retries what did not answer; the deadline bounds the retries.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if _, err := stager.SpoolDir(ctx, inst); err != nil {
			t.Fatalf("SpoolDir: %v (it does not contact the store)", err)
		}
		staged, path := stagerSnapshot(t)
		err := stager.Stage(ctx, inst, staged, path)
		checkNothingStaged(t, f, store, "ns/db/")
		return err
	}
	t.Run("store not answering", func(t *testing.T) {
		if err := upload(t, s3server.ClosedEndpoint(t), store.Bucket); !errors.Is(err, backup.ErrStoreUnavailable) || errors.Is(err, backup.ErrMisconfigured) {
			t.Errorf("Stage = %v, want ErrStoreUnavailable", err)
		}
	})
	t.Run("bucket does not exist", func(t *testing.T) {
		if err := upload(t, store.Endpoint, "no-such-bucket"); !errors.Is(err, backup.ErrMisconfigured) || errors.Is(err, backup.ErrStoreUnavailable) {
			t.Errorf("Stage = %v, want ErrMisconfigured", err)
		}
	})
}

// stagerInstance is instance ns/db (UID uid-1, as the steps fixture deploys it) with an S3
// envStager is a Stager of f's cluster whose S3 credentials for store come from the
// environment, as etcdaas-apiserver's own may.
func envStager(t *testing.T, f *stepsFixture, store *s3server.Server) Stager {
	resolver := &backup.Resolver{Credentials: backup.EnvCredentials{Lookup: func(name string) (string, bool) {
		return map[string]string{backup.EnvAccessKeyID: store.AccessKeyID, backup.EnvSecretAccessKey: store.SecretAccessKey}[name], true
	}}}
	return Stager{Client: f.client, Resolver: resolver, Dir: t.TempDir()}
}

// destination.
func stagerInstance(endpoint, bucket string, creds *etcdaas.SecretReference) *etcdaas.ETCDInstance {
	return &etcdaas.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db", UID: "uid-1"},
		Spec: etcdaas.ETCDInstanceSpec{Backup: &etcdaas.BackupSpec{Destination: etcdaas.BackupDestination{S3: &etcdaas.S3Destination{
			Endpoint: endpoint, Bucket: bucket, CredentialsSecretRef: creds}}}}}
}

// stagerSnapshot is a verified snapshot in a spool file, as the API server hands it to Stage.
func stagerSnapshot(t *testing.T) (*snapshot.Staged, string) {
	t.Helper()
	path := snapshottest.Make(t, t.TempDir(), "snap.db", map[string]string{"k": "v"})
	info, err := snapshot.Verify(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return &snapshot.Staged{ID: "r1", InstanceUID: "uid-1", Info: *info, RequestedAt: time.Now().UTC()}, path
}

// checkNothingStaged checks that no restore is recorded on the StatefulSet and that the
// store's bucket holds nothing below prefix.
func checkNothingStaged(t *testing.T, f *stepsFixture, store *s3server.Server, prefix string) {
	t.Helper()
	sts, err := f.client.AppsV1().StatefulSets("ns").Get(context.Background(), "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a, ok := sts.Annotations[annotationRestoreRequest]; ok {
		t.Errorf("a failed staging recorded a restore request: %s", a)
	}
	client, err := store.Client()
	if err != nil {
		t.Fatal(err)
	}
	for obj := range client.ListObjects(context.Background(), store.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			t.Fatal(obj.Err)
		}
		t.Errorf("a failed staging left %s in the bucket", obj.Key)
	}
}

// commitFailing is a destination whose uploads are written but cannot be committed.
type commitFailing struct {
	backup.Destination
	aborted int
}

func (d *commitFailing) Write(_ context.Context, _, _ string, body io.Reader) (backup.Upload, error) {
	if _, err := io.Copy(io.Discard, body); err != nil {
		return nil, err
	}
	return commitFailingUpload{d}, nil
}

type commitFailingUpload struct{ dest *commitFailing }

func (u commitFailingUpload) Commit(context.Context, backup.Info) error {
	return fmt.Errorf("%w: the S3 store cannot serve the request now (503 SlowDown)", backup.ErrStoreUnavailable)
}

func (u commitFailingUpload) Abort(context.Context) error { u.dest.aborted++; return nil }

// TestUploadAbortsWhatItCannotCommit: a staged snapshot written but not committed is removed
// from the staging area's incomplete uploads, which nothing else sweeps, and the commit's
// error keeps its class.
func TestUploadAbortsWhatItCannotCommit(t *testing.T) {
	staged, path := stagerSnapshot(t)
	dest := &commitFailing{}
	err := upload(context.Background(), dest, backup.Key(staged.RequestedAt, staged.Info.Revision), staged, path)
	if !errors.Is(err, backup.ErrStoreUnavailable) {
		t.Errorf("upload = %v, want the commit's ErrStoreUnavailable", err)
	}
	if dest.aborted != 1 {
		t.Errorf("the upload that could not be committed was aborted %d times, want once", dest.aborted)
	}
}

// TestStageWhoseRecordAnswerIsLost: the update that records the restore request goes through
// but its answer is lost (a timeout). The request is recorded, so the controller will carry
// it out: the staged snapshot must stay for member 0 to read, and the restore is accepted,
// not answered with an error a retry of which would be a 409 naming this very restore.
func TestStageWhoseRecordAnswerIsLost(t *testing.T) {
	ctx := context.Background()
	store := s3server.Start(t)
	f := newStepsFixture(t, 3, 3, 3, healthyCluster(3))
	lost := true
	f.client.PrependReactor("update", "statefulsets", func(action clienttesting.Action) (bool, runtime.Object, error) {
		if !lost {
			return false, nil, nil
		}
		lost = false
		obj := action.(clienttesting.UpdateAction).GetObject()
		if err := f.client.Tracker().Update(action.GetResource(), obj, action.GetNamespace()); err != nil {
			return true, nil, err
		}
		return true, nil, apierrors.NewTimeoutError("request did not complete within requested timeout", 0)
	})
	stager := envStager(t, f, store)
	inst := stagerInstance(store.Endpoint, store.Bucket, nil)
	staged, path := stagerSnapshot(t)
	if err := stager.Stage(ctx, inst, staged, path); err != nil {
		t.Fatalf("Stage = %v, want the restore accepted: its request is recorded", err)
	}
	req, err := restoreRequestOf(f.sts(t).Annotations)
	if err != nil || req == nil || req.ID != staged.ID {
		t.Fatalf("recorded request = %+v, %v", req, err)
	}
	client, err := store.Client()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.StatObject(ctx, store.Bucket, req.S3.Prefix+req.Key, minio.StatObjectOptions{}); err != nil {
		t.Fatalf("the staged snapshot of the recorded request: %v", err)
	}
}

// TestStagerRefusesARestoreDuringARecovery: a recovery from quorum loss recorded on the
// StatefulSet (the seed, with the survivor) while a snapshot uploads makes Stage refuse it
// with ErrRecoveryUnderWay naming the survivor, not a restore that is not there, and nothing
// is left in the staging area or recorded; the next restore is refused before its upload.
func TestStagerRefusesARestoreDuringARecovery(t *testing.T) {
	ctx := context.Background()
	store := s3server.Start(t)
	f := newStepsFixture(t, 3, 3, 3, healthyCluster(3))
	stager := envStager(t, f, store)
	inst := stagerInstance(store.Endpoint, store.Bucket, nil)
	staged, path := receiveSpooled(t, stager, inst, "r1")

	sts := f.sts(t).DeepCopy()
	sts.Annotations[annotationSeed] = (&seed{ID: "rec-1", Recover: "db-2"}).annotation()
	if _, err := f.client.AppsV1().StatefulSets("ns").Update(ctx, sts, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	err := stager.Stage(ctx, inst, staged, path)
	if !errors.Is(err, snapshot.ErrRecoveryUnderWay) || errors.Is(err, snapshot.ErrRestorePending) || !strings.Contains(err.Error(), "from member db-2") {
		t.Fatalf("Stage during a recovery: %v, want ErrRecoveryUnderWay naming db-2", err)
	}
	checkNothingStaged(t, f, store, "ns/db/")
	if _, err := stager.SpoolDir(ctx, inst); !errors.Is(err, snapshot.ErrRecoveryUnderWay) {
		t.Fatalf("SpoolDir during a recovery: %v, want ErrRecoveryUnderWay", err)
	}
}

// TestStagingsOfTheSameTimeAndRevisionKeepApart: two restores accepted in the same
// millisecond with snapshots of the same revision (different data) stage distinct objects.
// The second, refused as the first is pending, deletes only its own upload: the first's
// snapshot stays for member 0 to read, with the first's data; and of two staged uploads,
// deleting one leaves the other.
func TestStagingsOfTheSameTimeAndRevisionKeepApart(t *testing.T) {
	ctx := context.Background()
	store := s3server.Start(t)
	f := newStepsFixture(t, 3, 3, 3, healthyCluster(3))
	stager := envStager(t, f, store)
	inst := stagerInstance(store.Endpoint, store.Bucket, nil)
	first, firstPath := receiveSpooled(t, stager, inst, "r1")
	second, secondPath := receiveSpooled(t, stager, inst, "r2")
	second.RequestedAt = first.RequestedAt
	if first.Info.Revision != second.Info.Revision || first.Info.SHA256 == second.Info.SHA256 {
		t.Fatalf("want two different snapshots of one revision: %+v, %+v", first.Info, second.Info)
	}

	if err := stager.Stage(ctx, inst, first, firstPath); err != nil {
		t.Fatal(err)
	}
	if err := stager.Stage(ctx, inst, second, secondPath); !errors.Is(err, snapshot.ErrRestorePending) {
		t.Fatalf("the second restore: %v, want ErrRestorePending", err)
	}
	req, err := restoreRequestOf(f.sts(t).Annotations)
	if err != nil || req == nil || req.ID != "r1" {
		t.Fatalf("recorded request = %+v, %v", req, err)
	}
	checkStagedSum(t, stager.Resolver, v1beta1Dest(req).S3, req.Key, first.Info.SHA256)

	// Two uploads staged at once: deleting one leaves the other.
	keys := map[string]backup.Destination{}
	for _, staged := range []*snapshot.Staged{first, second} {
		_, staging, err := stager.destination(ctx, inst, staged.ID)
		if err != nil {
			t.Fatal(err)
		}
		path := snapshottest.Make(t, t.TempDir(), "snap.db", map[string]string{"k": staged.ID})
		info, err := snapshot.Verify(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		staged.Info = *info
		if err := upload(ctx, staging, backup.Key(staged.RequestedAt, staged.Info.Revision), staged, path); err != nil {
			t.Fatal(err)
		}
		keys[staged.ID] = staging
	}
	key := backup.Key(first.RequestedAt, first.Info.Revision)
	if err := keys["r2"].Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, _, err := keys["r2"].Open(ctx, key); !errors.Is(err, backup.ErrNotFound) {
		t.Fatalf("the deleted upload: %v, want ErrNotFound", err)
	}
	checkStagedSum(t, stager.Resolver, v1beta1Dest(req).S3, key, first.Info.SHA256)
}

// checkStagedSum reads the staged object key of the staging area s3 and checks that it holds
// the snapshot of sha256 sum, as its provenance says.
func checkStagedSum(t *testing.T, resolver *backup.Resolver, s3 *v1beta1.S3Destination, key, sum string) {
	t.Helper()
	ctx := context.Background()
	staging, err := resolver.Destination(ctx, "ns", "db", v1beta1.BackupDestination{S3: s3})
	if err != nil {
		t.Fatal(err)
	}
	r, info, err := staging.Open(ctx, key)
	if err != nil {
		t.Fatalf("the first restore's staged snapshot: %v", err)
	}
	defer func() { _ = r.Close() }()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum || info.SHA256 != sum {
		t.Fatalf("the first restore's staged snapshot hashes to %s (provenance %s), want %s", got, info.SHA256, sum)
	}
}
