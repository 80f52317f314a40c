package integration

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/backup"
	"github.com/etcdaas/etcdaas/pkg/controller"
	"github.com/etcdaas/etcdaas/pkg/controller/backend/local"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
	e2eframework "github.com/etcdaas/etcdaas/test/e2e/framework"
	"github.com/etcdaas/etcdaas/test/integration/framework"
	"github.com/etcdaas/etcdaas/test/s3server"
)

// credentialsByNamespace gives each test namespace its own source of S3 credentials (a server
// environment, or Secrets as in a cluster), so that one controller serves instances with
// good, missing and wrong credentials from both sources at once.
type credentialsByNamespace map[string]backup.Credentials

func (c credentialsByNamespace) S3Credentials(ctx context.Context, namespace string, ref *v1beta1.SecretReference) (string, string, error) {
	return c[namespace].S3Credentials(ctx, namespace, ref)
}

// s3Secret is a credentials Secret with the keys credentialsSecretRef names.
func s3Secret(namespace, accessKeyID, secretAccessKey string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "s3-creds"}, Data: map[string][]byte{
		backup.SecretAccessKeyIDKey: []byte(accessKeyID), backup.SecretSecretAccessKeyKey: []byte(secretAccessKey)}}
}

// fixableCredentials are wrong until fixed, as when a person corrects a server's keys.
type fixableCredentials struct {
	wrong, good backup.Credentials
	fixed       atomic.Bool
}

func (c *fixableCredentials) S3Credentials(ctx context.Context, namespace string, ref *v1beta1.SecretReference) (string, string, error) {
	if c.fixed.Load() {
		return c.good.S3Credentials(ctx, namespace, ref)
	}
	return c.wrong.S3Credentials(ctx, namespace, ref)
}

func env(vars map[string]string) backup.EnvCredentials {
	return backup.EnvCredentials{Lookup: func(k string) (string, bool) { v, ok := vars[k]; return v, ok }}
}

func s3Instance(name string, store *s3server.Server, keep int32) *v1beta1.ETCDInstance {
	return &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1beta1.ETCDInstanceSpec{
		Replicas: ptr.To[int32](1),
		Backup: &v1beta1.BackupSpec{Schedule: "* * * * *", Keep: ptr.To(keep), Destination: v1beta1.BackupDestination{
			S3: &v1beta1.S3Destination{Endpoint: store.Endpoint, Bucket: store.Bucket},
		}},
	}}
}

// TestScheduledBackupsToS3 runs a schedule of every minute with keep 2 against a real
// S3-compatible store until three backups succeeded: exactly the two newest remain, each a
// valid snapshot for etcdutl whose SHA-256 matches its metadata and the status. Credentials
// from a Secret (credentialsSecretRef, as a controller in a cluster reads them) work as well;
// instances with missing or wrong credentials, from the environment or a Secret, report
// BackupSucceeded=False with a clear message and a BackupFailed Warning Event, and
// are retried with backoff, not in a loop; once the credentials are fixed, the next attempt
// succeeds and a BackupSucceeded Event says so.
func TestScheduledBackupsToS3(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("waits for three scheduled minutes")
	}
	store := s3server.Start(t)
	etcdutl := e2eframework.RequireTools(t, e2eframework.Etcdutl)[e2eframework.Etcdutl]
	good := map[string]string{backup.EnvAccessKeyID: store.AccessKeyID, backup.EnvSecretAccessKey: store.SecretAccessKey}
	wrong := map[string]string{backup.EnvAccessKeyID: store.AccessKeyID, backup.EnvSecretAccessKey: "not-the-secret"}
	fixable := &fixableCredentials{wrong: env(wrong), good: env(good)}
	// The Secrets a controller in a cluster reads (credentialsSecretRef); none in sched-secret-missing.
	secrets := backup.SecretCredentials{Client: kubefake.NewClientset(
		s3Secret("sched-secret", store.AccessKeyID, store.SecretAccessKey),
		s3Secret("sched-secret-wrong", store.AccessKeyID, "not-the-secret"))}
	e := ctlStartWithBackups(t, local.Options{}, controller.BackupOptions{Resolver: backup.Resolver{Credentials: credentialsByNamespace{
		"sched-good": env(good), "sched-missing": env(nil), "sched-wrong": env(wrong),
		"sched-secret": secrets, "sched-secret-missing": secrets, "sched-secret-wrong": secrets,
		"sched-fixed": fixable,
	}}})
	name := "db"
	createScheduledInstances(e, store, name)
	e.running("sched-good", name, time.Minute)
	cli := e.etcdClient("sched-good", name)
	for i := range 100 {
		if _, err := cli.Put(context.Background(), "/k/"+strconv.Itoa(i), strings.Repeat("x", 1000)); err != nil {
			t.Fatal(err)
		}
	}

	// A failed attempt is a Warning Event with the cause; the keys are then fixed.
	fixedInst := e.running("sched-fixed", name, time.Minute)
	e.waitForEventWithin("sched-fixed", fixedInst, "BackupFailed Scheduled backup started", 2*time.Minute)
	fixable.fixed.Store(true)

	seen := waitForThreeBackups(t, e, name)
	client, err := store.Client()
	if err != nil {
		t.Fatal(err)
	}
	checkRetention(t, client, store, name, seen, etcdutl)
	checkBackupWithSecretCredentials(t, e, client, store, name)
	checkFixedCredentials(t, e, fixedInst)
	checkFailingCredentials(t, e, name)

	// The server lists a destination with its own credentials (standalone: its environment,
	// which has none for this store): a configuration to change is a 409, not a 503.
	_, err = e.client.EtcdaasV1beta1().ETCDInstances("sched-good").ListBackups(context.Background(), name, metav1.GetOptions{})
	if !apierrors.IsConflict(err) || !strings.Contains(err.Error(), "S3") {
		t.Errorf("backups of an S3 destination the server has no usable credentials for: %v, want a 409 about them", err)
	}
}

// checkFixedCredentials checks that the retry after the keys were fixed (30s after the
// failure) succeeded, and that the Events tell both.
func checkFixedCredentials(t *testing.T, e *ctlEnv, inst *v1beta1.ETCDInstance) {
	t.Helper()
	events := e.waitForEventWithin(inst.Namespace, inst, "BackupSucceeded Scheduled backups succeed again: ", time.Minute)
	if failed := slices.IndexFunc(events, func(s string) bool { return strings.HasPrefix(s, "BackupFailed ") }); failed < 0 ||
		!strings.Contains(events[failed], "secret access key is wrong") {
		t.Errorf("%s: events %q, want a BackupFailed naming the wrong key", inst.Namespace, events)
	}
}

// createScheduledInstances creates instance name, backed up to store every minute keeping 2,
// in one namespace per source and state of credentials.
func createScheduledInstances(e *ctlEnv, store *s3server.Server, name string) {
	for _, ns := range []string{"sched-good", "sched-missing", "sched-wrong", "sched-fixed"} {
		e.create(ns, s3Instance(name, store, 2))
	}
	for _, ns := range []string{"sched-secret", "sched-secret-missing", "sched-secret-wrong"} {
		inst := s3Instance(name, store, 2)
		inst.Spec.Backup.Destination.S3.CredentialsSecretRef = &v1beta1.SecretReference{Name: "s3-creds"}
		e.create(ns, inst)
	}
}

// waitForThreeBackups waits for three successful backups of sched-good/name, seen through
// status.backup.lastBackup, each with a BackupSucceeded=True condition that names it.
func waitForThreeBackups(t *testing.T, e *ctlEnv, name string) []v1beta1.BackupInfo {
	t.Helper()
	// Three successful backups, seen through status.backup.lastBackup.
	var seen []v1beta1.BackupInfo
	e.waitFor("sched-good", name, 4*time.Minute, "three successful backups", func(i *v1beta1.ETCDInstance) bool {
		if b := i.Status.Backup; b != nil && b.LastBackup != nil && !slices.ContainsFunc(seen, func(s v1beta1.BackupInfo) bool { return s.Key == b.LastBackup.Key }) {
			seen = append(seen, *b.LastBackup)
			cond := meta.FindStatusCondition(i.Status.Conditions, etcdaas.ConditionBackupSucceeded)
			if cond == nil || cond.Status != metav1.ConditionTrue || !strings.Contains(cond.Message, b.LastBackup.Key) {
				t.Errorf("after backup %s: condition %+v", b.LastBackup.Key, cond)
			}
			t.Logf("backup %s: %d bytes, revision %d", b.LastBackup.Key, b.LastBackup.SizeBytes, b.LastBackup.Revision)
		}
		return len(seen) >= 3
	})
	return seen
}

// checkRetention checks that the bucket holds exactly the two newest of the backups seen,
// each a valid snapshot matching its metadata.
func checkRetention(t *testing.T, client *minio.Client, store *s3server.Server, name string, seen []v1beta1.BackupInfo, etcdutl string) {
	t.Helper()
	// Retention runs right after the third backup's status is written.
	prefix := "sched-good/" + name + "/"
	var keys []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		keys = nil
		for obj := range client.ListObjects(context.Background(), store.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
			if obj.Err != nil {
				t.Fatal(obj.Err)
			}
			keys = append(keys, strings.TrimPrefix(obj.Key, prefix))
		}
		if len(keys) == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	slices.Sort(keys)
	last := seen[len(seen)-2:]
	if len(keys) != 2 || keys[0] != last[0].Key || keys[1] != last[1].Key {
		t.Fatalf("bucket holds %v, want the two newest backups %s and %s", keys, last[0].Key, last[1].Key)
	}
	for _, want := range last {
		checkSnapshotObject(t, client, store.Bucket, prefix+want.Key, want, etcdutl)
	}
}

// checkBackupWithSecretCredentials checks that backups with credentials from a Secret
// succeed, with the object in the instance's prefix.
func checkBackupWithSecretCredentials(t *testing.T, e *ctlEnv, client *minio.Client, store *s3server.Server, name string) {
	t.Helper()
	// Credentials from a Secret: backups succeed, with the object in the instance's prefix.
	withSecret := e.waitFor("sched-secret", name, time.Minute, "a backup with the Secret's credentials", func(i *v1beta1.ETCDInstance) bool {
		return i.Status.Backup != nil && i.Status.Backup.LastBackup != nil
	})
	if _, err := client.StatObject(context.Background(), store.Bucket, "sched-secret/"+name+"/"+withSecret.Status.Backup.LastBackup.Key, minio.StatObjectOptions{}); err != nil {
		t.Errorf("the backup taken with the Secret's credentials: %v", err)
	}
}

// checkFailingCredentials checks the instances with missing and wrong credentials: a clear
// condition, no success, a bounded number of attempts, and still Running.
func checkFailingCredentials(t *testing.T, e *ctlEnv, name string) {
	t.Helper()
	// Missing and wrong credentials: a clear condition, no success, a bounded number of attempts.
	for ns, wantMsg := range map[string]string{
		"sched-missing":        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not both set",
		"sched-wrong":          "secret access key is wrong",
		"sched-secret-missing": "Secret sched-secret-missing/s3-creds does not exist",
		"sched-secret-wrong":   "secret access key is wrong",
	} {
		inst, err := e.client.EtcdaasV1beta1().ETCDInstances(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cond := meta.FindStatusCondition(inst.Status.Conditions, etcdaas.ConditionBackupSucceeded)
		if cond == nil || cond.Status != metav1.ConditionFalse || !strings.Contains(cond.Message, wantMsg) {
			t.Errorf("%s: BackupSucceeded %+v, want False with %q", ns, cond, wantMsg)
			continue
		}
		if inst.Status.Backup == nil || inst.Status.Backup.LastScheduleTime == nil || inst.Status.Backup.LastSuccessfulTime != nil {
			t.Errorf("%s: status.backup %+v, want attempts and no success", ns, inst.Status.Backup)
		}
		attempts, _ := strconv.Atoi(regexp.MustCompile(`attempt (\d+)`).FindStringSubmatch(cond.Message + " attempt 0")[1])
		// About four minutes of 30s, 1m, 2m backoff (and a slot every minute): a handful.
		if attempts < 2 || attempts > 8 {
			t.Errorf("%s: %d attempts, want a few retries with backoff: %s", ns, attempts, cond.Message)
		}
		t.Logf("%s: %s: %s (phase %s)", ns, cond.Reason, cond.Message, inst.Status.Phase)
		if events := e.events(ns, inst); !slices.ContainsFunc(events, func(s string) bool {
			return strings.HasPrefix(s, "BackupFailed ") && strings.Contains(s, wantMsg)
		}) {
			t.Errorf("%s: events %q, want a BackupFailed Warning with %q", ns, events, wantMsg)
		}
		if inst.Status.Phase != v1beta1.PhaseRunning {
			t.Errorf("%s: phase %s, want Running: a failing backup does not fail the cluster", ns, inst.Status.Phase)
		}
	}
}

// checkSnapshotObject downloads an object, checks its SHA-256 against want and its metadata,
// and runs etcdutl snapshot status on it.
func checkSnapshotObject(t *testing.T, client *minio.Client, bucket, key string, want v1beta1.BackupInfo, etcdutl string) {
	t.Helper()
	obj, err := client.GetObject(context.Background(), bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = obj.Close() }()
	st, err := obj.Stat()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), filepath.Base(key))
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), obj)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	got := hex.EncodeToString(h.Sum(nil))
	if got != want.SHA256 || st.UserMetadata[backup.MetaSHA256] != got || n != want.SizeBytes {
		t.Errorf("%s: sha256 %s (metadata %s, status %s), %d bytes (status %d)", key, got, st.UserMetadata[backup.MetaSHA256], want.SHA256, n, want.SizeBytes)
	}
	if st.UserMetadata[backup.MetaRevision] != strconv.FormatInt(want.Revision, 10) || st.UserMetadata[backup.MetaInstanceUID] != want.InstanceUID || want.InstanceUID == "" {
		t.Errorf("%s: metadata %v does not match %+v", key, st.UserMetadata, want)
	}
	out, err := exec.Command(etcdutl, "snapshot", "status", path, "-w", "json").CombinedOutput()
	if err != nil {
		t.Errorf("etcdutl snapshot status %s: %v\n%s", key, err, out)
	}
	t.Logf("etcdutl snapshot status %s: %s", key, strings.TrimSpace(string(out)))
}

// TestBackupToS3Throughput compares a backup streamed into S3 with a direct clientv3
// snapshot of the same member, and checks that the process's RSS stays flat meanwhile: the
// snapshot goes part by part, never whole.
func TestBackupToS3Throughput(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 96 MiB")
	}
	store := s3server.Start(t)
	e := ctlStart(t, local.Options{SnapshotCount: 40, SnapshotCatchUpEntries: 20, QuotaBackendBytes: 1 << 30})
	ns, name := "s3speed", "db"
	ctx := context.Background()
	inst := e.create(ns, &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](1)}})
	e.running(ns, name, time.Minute)
	cli := e.etcdClient(ns, name)
	value := strings.Repeat("v", 512*1024)
	const total = 96 << 20
	for i := 0; i*len(value) < total; i++ {
		if _, err := cli.Put(ctx, "/big/"+strconv.Itoa(i), value); err != nil {
			t.Fatal(err)
		}
	}
	direct, directTime := directSnapshot(t, ctx, e, ns, name)

	dest, err := backup.Resolver{Credentials: env(map[string]string{backup.EnvAccessKeyID: store.AccessKeyID, backup.EnvSecretAccessKey: store.SecretAccessKey})}.
		Destination(ctx, ns, name, v1beta1.BackupDestination{S3: &v1beta1.S3Destination{Endpoint: store.Endpoint, Bucket: store.Bucket}})
	if err != nil {
		t.Fatal(err)
	}
	info, s3Time, base, peak := s3BackupRSS(t, ctx, e, dest, inst)
	t.Logf("direct clientv3 snapshot: %d MiB in %s (%.1f MiB/s); backup to S3: %d MiB in %s (%.1f MiB/s), ratio %.2f; RSS %d MiB -> peak %d MiB (+%d MiB)",
		direct>>20, directTime.Round(time.Millisecond), mbps(direct, directTime), info.Size>>20, s3Time.Round(time.Millisecond), mbps(info.Size, s3Time),
		s3Time.Seconds()/directTime.Seconds(), base>>20, peak>>20, (peak-base)>>20)
	if growth := peak - base; growth > 64<<20 {
		t.Errorf("RSS grew by %d MiB during a %d MiB backup: the snapshot is buffered", growth>>20, info.Size>>20)
	}
}

// s3BackupRSS takes a backup of inst's first member to dest (an S3 destination): it returns
// the backup, how long it took, this process's RSS before it and the peak RSS during it.
func s3BackupRSS(t *testing.T, ctx context.Context, e *ctlEnv, dest backup.Destination, inst *v1beta1.ETCDInstance) (backup.Info, time.Duration, int64, int64) {
	t.Helper()
	access := e.access(inst.Namespace, inst.Name)
	var mu sync.Mutex
	base := vmRSS(t)
	peak := base
	stop, sampled := make(chan struct{}), make(chan struct{})
	go func() { sampleRSS(t, &mu, stop, &peak); close(sampled) }()
	start := time.Now()
	snap, err := etcdcluster.OpenSnapshot(ctx, access, access.Endpoints[0])
	if err != nil {
		t.Fatal(err)
	}
	info, err := backup.Take(ctx, dest, backup.Snapshot{Reader: snap, Revision: snap.Revision, EtcdVersion: snap.Version}, string(inst.UID), time.Now)
	_ = snap.Close()
	s3Time := time.Since(start)
	close(stop)
	<-sampled
	if err != nil {
		t.Fatal(err)
	}
	return info, s3Time, base, peak
}

// TestBackupsSubresourceAndPlugin backs up to the server's local backup directory on a
// schedule and lists the backups through etcdinstances/NAME/backups and
// `kubectl etcdaas backups`: key, time, size, revision and etcd version, as the destination
// records them. An instance without spec.backup has none; a missing instance is a 404.
func TestBackupsSubresourceAndPlugin(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("waits for a scheduled minute")
	}
	e := ctlStartWithBackups(t, local.Options{}, controller.BackupOptions{})

	ns, name := "listing", "db"
	e.create(ns, &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1beta1.ETCDInstanceSpec{
		Replicas: ptr.To[int32](1),
		Backup: &v1beta1.BackupSpec{Schedule: "* * * * *", Keep: ptr.To[int32](3),
			Destination: v1beta1.BackupDestination{Local: &v1beta1.LocalDestination{}}},
	}})
	e.create(ns, &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "plain"}, Spec: v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](1)}})
	inst := e.waitFor(ns, name, 3*time.Minute, "a successful backup", func(i *v1beta1.ETCDInstance) bool {
		return i.Status.Backup != nil && i.Status.Backup.LastBackup != nil
	})
	last := inst.Status.Backup.LastBackup

	instances := e.client.EtcdaasV1beta1().ETCDInstances(ns)
	list, err := instances.ListBackups(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) == 0 || list.Items[0].Key != last.Key || list.Items[0].SHA256 != last.SHA256 || list.Items[0].SizeBytes != last.SizeBytes ||
		list.Items[0].Revision != last.Revision || list.Items[0].InstanceUID != string(inst.UID) || list.Items[0].EtcdVersion == "" {
		t.Fatalf("backups %+v, want the newest to be %+v", list.Items, last)
	}
	if plain, err := instances.ListBackups(context.Background(), "plain", metav1.GetOptions{}); err != nil || len(plain.Items) != 0 {
		t.Errorf("an instance without spec.backup lists %v, %v", plain, err)
	}
	if _, err := instances.ListBackups(context.Background(), "missing", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a missing instance: %v, want 404", err)
	}

	plugin := pluginRunner{server: e.srv}
	r := plugin.run(t, ns, "backups", name)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) < 2 || !regexp.MustCompile(`^KEY\s+TIME\s+SIZE\s+REVISION\s+ETCD VERSION$`).MatchString(lines[0]) {
		t.Fatalf("kubectl etcdaas backups: %d %q %q", r.code, r.stdout, r.stderr)
	}
	fields := strings.Fields(lines[1])
	if fields[0] != last.Key || fields[1] != last.CompletionTime.UTC().Format(time.RFC3339) || fields[3] != strconv.FormatInt(last.Revision, 10) || fields[4] != last.EtcdVersion {
		t.Errorf("first row %q, want %+v", lines[1], last)
	}
	checkKubectlGetBackups(t, e.srv.KubeconfigPath, ns, name, last)
	expectPlugin(t, plugin.run(t, ns, "backups", "plain"), 0, "", "No backups of plain in "+ns+" namespace: it has no spec.backup")
	expectPlugin(t, plugin.run(t, ns, "backups", "plain", "-o", "yaml"), 0,
		"apiVersion: etcdaas.dev/v1beta1\nitems: []\nkind: ETCDInstanceBackupList\nmetadata: {}\n", "")
	expectPlugin(t, plugin.run(t, ns, "backups", "missing"), 1, "", "Error from server (NotFound)")
}

// checkKubectlGetBackups checks `kubectl get etcdinstance NAME --subresource=backups` with
// the real kubectl binaries: the server's table of the backups, newest (last) first, with the
// plugin's columns, and SHA256 and INSTANCE UID with -o wide. Without a table of its own,
// the server rendered one empty NAME and an AGE of <unknown> per backup.
func checkKubectlGetBackups(t *testing.T, kubeconfig, ns, name string, last *v1beta1.BackupInfo) {
	t.Helper()
	for label, bin := range framework.KubectlBinaries(t) {
		t.Run("kubectl-"+label, func(t *testing.T) {
			k := newKubectl(t, bin)
			k.ns, k.env = ns, append(k.env, "KUBECONFIG="+kubeconfig) // the last KUBECONFIG wins
			lines := strings.Split(strings.TrimSpace(k.mustStdout("get", "etcdinstance", name, "--subresource=backups")), "\n")
			if len(lines) < 2 || !regexp.MustCompile(`^KEY\s+TIME\s+SIZE\s+REVISION\s+ETCD VERSION$`).MatchString(lines[0]) {
				t.Fatalf("get --subresource=backups: %q", lines)
			}
			want := []string{last.Key, last.CompletionTime.UTC().Format(time.RFC3339), resource.NewQuantity(last.SizeBytes, resource.BinarySI).String(),
				strconv.FormatInt(last.Revision, 10), last.EtcdVersion}
			if got := strings.Fields(lines[1]); !slices.Equal(got, want) {
				t.Errorf("first row %q, want %q", got, want)
			}
			wide := strings.Split(strings.TrimSpace(k.mustStdout("get", "etcdinstance", name, "--subresource=backups", "-o", "wide")), "\n")
			if len(wide) < 2 || !regexp.MustCompile(`ETCD VERSION\s+SHA256\s+INSTANCE UID$`).MatchString(wide[0]) ||
				!slices.Equal(strings.Fields(wide[1]), append(want, last.SHA256, last.InstanceUID)) {
				t.Errorf("get --subresource=backups -o wide: %q", wide)
			}
		})
	}
}
