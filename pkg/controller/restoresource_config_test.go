package controller

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/backup"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	"github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned/fake"
	"github.com/etcdaas/etcdaas/pkg/pki"
	"github.com/etcdaas/etcdaas/pkg/snapshot/snapshottest"
	"github.com/etcdaas/etcdaas/test/s3server"
)

// credentialsSecret is the Secret ns/name holding S3 credentials; an empty secret leaves that
// key out.
func credentialsSecret(name, id, secret string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Data: map[string][]byte{backup.SecretAccessKeyIDKey: []byte(id)}}
	if secret != "" {
		s.Data[backup.SecretSecretAccessKeyKey] = []byte(secret)
	}
	return s
}

// s3Source is the instance ns/src backed up to the S3 destination s3.
func s3Source(s3 v1beta1.S3Destination) *v1beta1.ETCDInstance {
	return restoreInstance("ns", "src", v1beta1.ETCDInstanceSpec{Backup: &v1beta1.BackupSpec{
		Schedule: "@daily", Destination: v1beta1.BackupDestination{S3: &s3}}})
}

// expectMisconfigured checks that both ways of reading spec.restoreFrom's backup from the
// source src refuse it as a configuration to change, with a message that names the source and
// says what is wrong (want), looked at again after retry.
func expectMisconfigured(t *testing.T, src BackupRestoreSource, want string, retry time.Duration) {
	t.Helper()
	inst := restoreInstance("ns", "new", v1beta1.ETCDInstanceSpec{RestoreFrom: &v1beta1.RestoreSource{Instance: "src"}})
	_, _, openErr := src.OpenRestoreSource(context.Background(), inst)
	_, locateErr := src.LocateRestoreSource(context.Background(), inst)
	for what, err := range map[string]error{"open": openErr, "locate": locateErr} {
		pe, ok := backend.IsPermanent(err)
		if !ok || pe.Reason != ReasonRestoreSourceMisconfigured || pe.RetryAfter != retry ||
			!strings.Contains(pe.Message, "ns/src") || !strings.Contains(pe.Message, want) {
			t.Errorf("%s: %v (%+v), want a %s retried after %s saying %q", what, err, pe, ReasonRestoreSourceMisconfigured, retry, want)
		}
	}
	t.Logf("%s", openErr)
}

// TestRestoreSourceNeedsConfigurationChange: a source whose S3 destination only a change of
// configuration lets the controller read (credentials it cannot have, an endpoint or caBundle
// the store cannot be reached with) fails the new instance with RestoreSourceMisconfigured
// and what to change, looked at again every RetryInterval; a store that does not answer is
// retried with backoff instead. (The store's own refusals: TestRestoreSourceRefusedByTheStore.)
func TestRestoreSourceNeedsConfigurationChange(t *testing.T) {
	plain := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(plain.Close)
	tlsStore := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(tlsStore.Close)
	otherCA, err := pki.NewCA("not the store's CA")
	if err != nil {
		t.Fatal(err)
	}
	secrets := kubefake.NewClientset(credentialsSecret("creds", "id", "secret"), credentialsSecret("partial", "id", ""))
	creds := &v1beta1.SecretReference{Name: "creds"}
	for _, tc := range []struct {
		what string
		s3   v1beta1.S3Destination
		want string
	}{
		{"Secret missing", v1beta1.S3Destination{Endpoint: plain.URL, Bucket: "backups", CredentialsSecretRef: &v1beta1.SecretReference{Name: "missing"}},
			"Secret ns/missing does not exist"},
		{"Secret without both keys", v1beta1.S3Destination{Endpoint: plain.URL, Bucket: "backups", CredentialsSecretRef: &v1beta1.SecretReference{Name: "partial"}},
			"needs both keys accessKeyID and secretAccessKey"},
		{"no credentialsSecretRef", v1beta1.S3Destination{Endpoint: plain.URL, Bucket: "backups"}, "credentialsSecretRef is not set"},
		{"caBundle of another CA", v1beta1.S3Destination{Endpoint: tlsStore.URL, Bucket: "backups", CredentialsSecretRef: creds, CABundle: string(otherCA.CertPEM)},
			"the S3 endpoint's certificate cannot be verified (check caBundle"},
		{"no caBundle for a private CA", v1beta1.S3Destination{Endpoint: tlsStore.URL, Bucket: "backups", CredentialsSecretRef: creds},
			"the S3 endpoint's certificate cannot be verified (check caBundle"},
		// Validation refuses it now (422); an instance stored before that still has it.
		{"caBundle that does not parse", v1beta1.S3Destination{Endpoint: tlsStore.URL, Bucket: "backups", CredentialsSecretRef: creds,
			CABundle: "-----BEGIN CERTIFICATE-----\nbm90IERFUg==\n-----END CERTIFICATE-----\n"}, "the S3 caBundle holds no PEM certificate"},
		{"https to an http endpoint", v1beta1.S3Destination{Endpoint: strings.Replace(plain.URL, "http:", "https:", 1), Bucket: "backups", CredentialsSecretRef: creds},
			"the S3 endpoint does not answer in TLS"},
	} {
		t.Run(tc.what, func(t *testing.T) {
			src := BackupRestoreSource{Client: fake.NewClientset(s3Source(tc.s3)), Resolver: backup.Resolver{Credentials: backup.SecretCredentials{Client: secrets}},
				RetryInterval: 42 * time.Second}
			expectMisconfigured(t, src, tc.want, 42*time.Second)
		})
	}
	// Without RetryInterval, RestoreSourceRetryInterval.
	src := BackupRestoreSource{Client: fake.NewClientset(s3Source(v1beta1.S3Destination{Endpoint: plain.URL, Bucket: "backups"})),
		Resolver: backup.Resolver{Credentials: backup.SecretCredentials{Client: secrets}}}
	expectMisconfigured(t, src, "credentialsSecretRef is not set", RestoreSourceRetryInterval)

	// A store that does not answer may come back: retried with backoff, not a failure.
	src.Client = fake.NewClientset(s3Source(v1beta1.S3Destination{Endpoint: s3server.ClosedEndpoint(t), Bucket: "backups", CredentialsSecretRef: creds}))
	inst := restoreInstance("ns", "new", v1beta1.ETCDInstanceSpec{RestoreFrom: &v1beta1.RestoreSource{Instance: "src"}})
	if _, _, err := src.OpenRestoreSource(context.Background(), inst); !errors.Is(err, backup.ErrStoreUnavailable) {
		t.Errorf("a store that does not answer: %v, want a retried ErrStoreUnavailable", err)
	} else if pe, ok := backend.IsPermanent(err); ok {
		t.Errorf("a store that does not answer: permanent %+v", pe)
	}
}

// TestRestoreSourceRefusedByTheStore: a real store's refusals of the source's destination
// (keys it does not know, a wrong secret, a bucket that does not exist) are configurations to
// change too, while the same destination configured right reaches its backups.
func TestRestoreSourceRefusedByTheStore(t *testing.T) {
	store := s3server.Start(t)
	secrets := kubefake.NewClientset(
		credentialsSecret("good", store.AccessKeyID, store.SecretAccessKey),
		credentialsSecret("unknown", "nobody", store.SecretAccessKey),
		credentialsSecret("wrong", store.AccessKeyID, "wrong-secret"),
	)
	destination := func(bucket, secret string) v1beta1.S3Destination {
		return v1beta1.S3Destination{Endpoint: store.Endpoint, Bucket: bucket, CredentialsSecretRef: &v1beta1.SecretReference{Name: secret}}
	}
	for _, tc := range []struct {
		what string
		s3   v1beta1.S3Destination
		want string
	}{
		{"unknown access key", destination(store.Bucket, "unknown"), "the S3 access key ID is not known to the store"},
		{"wrong secret key", destination(store.Bucket, "wrong"), "the S3 secret access key is wrong"},
		{"bucket missing", destination("no-such-bucket", "good"), "the S3 bucket does not exist"},
	} {
		t.Run(tc.what, func(t *testing.T) {
			src := BackupRestoreSource{Client: fake.NewClientset(s3Source(tc.s3)), Resolver: backup.Resolver{Credentials: backup.SecretCredentials{Client: secrets}},
				RetryInterval: time.Second}
			expectMisconfigured(t, src, tc.want, time.Second)
		})
	}
	src := BackupRestoreSource{Client: fake.NewClientset(s3Source(destination(store.Bucket, "good"))),
		Resolver: backup.Resolver{Credentials: backup.SecretCredentials{Client: secrets}}}
	inst := restoreInstance("ns", "new", v1beta1.ETCDInstanceSpec{RestoreFrom: &v1beta1.RestoreSource{Instance: "src"}})
	if _, _, err := src.OpenRestoreSource(context.Background(), inst); !isPermanent(err, ReasonNoBackups) {
		t.Errorf("the destination configured right: %v, want %s (it has no backup yet)", err, ReasonNoBackups)
	}
}

// restoringBackend seeds every instance with spec.restoreFrom from its source's backup before
// anything else, as the backends do, and is a fakeBackend otherwise.
type restoringBackend struct {
	*fakeBackend
	source BackupRestoreSource
	opens  atomic.Int32
}

func (b *restoringBackend) Sync(ctx context.Context, inst *v1beta1.ETCDInstance) (*backend.Result, error) {
	if inst.Spec.RestoreFrom != nil {
		b.opens.Add(1)
		body, _, err := b.source.OpenRestoreSource(ctx, inst)
		if err != nil {
			return &backend.Result{Step: "restoring from " + inst.Spec.RestoreFrom.Instance, StepReason: backend.StepRestoring}, err
		}
		_ = body.Close()
	}
	return b.fakeBackend.Sync(ctx, inst)
}

// TestMisconfiguredRestoreSourceIsReportedOnceAndRetried: an instance whose spec.restoreFrom
// source's destination needs a configuration change (here its credentials Secret is missing)
// says so in its conditions with reason RestoreSourceMisconfigured, gets one Warning Event
// however often the controller looks again, and starts by itself once the Secret is created,
// with no change to any instance.
func TestMisconfiguredRestoreSourceIsReportedOnceAndRetried(t *testing.T) {
	ctx := context.Background()
	store := s3server.Start(t)
	source := s3Source(v1beta1.S3Destination{Endpoint: store.Endpoint, Bucket: store.Bucket, CredentialsSecretRef: &v1beta1.SecretReference{Name: "creds"}})
	dest, err := backup.NewS3(backup.S3Config{Endpoint: store.Endpoint, Bucket: store.Bucket, Prefix: backup.DefaultPrefix("ns", "src"),
		AccessKeyID: store.AccessKeyID, SecretAccessKey: store.SecretAccessKey})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Take(ctx, dest, backup.Snapshot{Reader: bytes.NewReader(snapshottest.WithHash([]byte("snapshot"))), Revision: 7}, string(source.UID), time.Now); err != nil {
		t.Fatal(err)
	}
	inst := restoreInstance("ns", "db", v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](1), RestoreFrom: &v1beta1.RestoreSource{Instance: "src"}})
	inst.Generation = 1
	client := fake.NewClientset(source, inst)
	enforceResourceVersions(client)
	secrets := kubefake.NewClientset()
	be := &restoringBackend{fakeBackend: &fakeBackend{}, source: BackupRestoreSource{Client: client,
		Resolver: backup.Resolver{Credentials: backup.SecretCredentials{Client: secrets}}, RetryInterval: 50 * time.Millisecond}}
	recorder := events.NewFakeRecorder(100)
	runController(t, Options{Client: client, Backend: be, Events: recorder})
	instances := client.EtcdaasV1beta1().ETCDInstances("ns")

	failed := waitPhase(t, ctx, instances, "db", v1beta1.PhaseFailed)
	for _, typ := range []string{etcdaas.ConditionDegraded, etcdaas.ConditionProgressing} {
		c := cond(t, failed.Status, typ)
		if c.Reason != ReasonRestoreSourceMisconfigured || c.ObservedGeneration != 1 {
			t.Errorf("%s: %+v, want reason %s", typ, c, ReasonRestoreSourceMisconfigured)
		}
	}
	if c := cond(t, failed.Status, etcdaas.ConditionDegraded); !strings.Contains(c.Message, "Secret ns/creds does not exist") {
		t.Errorf("Degraded message %q does not say what to change", c.Message)
	}
	if c := cond(t, failed.Status, etcdaas.ConditionProgressing); c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "every 50ms") {
		t.Errorf("Progressing %+v, want False saying how often the source is read again", c)
	}
	// The controller looks again by itself, but reports the same failure once.
	opens := be.opens.Load()
	time.Sleep(400 * time.Millisecond)
	if again := be.opens.Load(); again < opens+3 {
		t.Errorf("the source was read %d times in 400ms after %d, want it read again every 50ms", again-opens, opens)
	}
	var warnings []string
	for len(recorder.Events) > 0 {
		if e := <-recorder.Events; strings.HasPrefix(e, "Warning") {
			warnings = append(warnings, e)
		}
	}
	if len(warnings) != 1 || !strings.HasPrefix(warnings[0], "Warning "+ReasonRestoreSourceMisconfigured+" spec.restoreFrom: the backups of ns/src") {
		t.Errorf("Warning Events %q, want one %s", warnings, ReasonRestoreSourceMisconfigured)
	}

	if _, err := secrets.CoreV1().Secrets("ns").Create(ctx, credentialsSecret("creds", store.AccessKeyID, store.SecretAccessKey), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	running := waitPhase(t, ctx, instances, "db", v1beta1.PhaseRunning)
	if running.Generation != 1 {
		t.Errorf("generation %d: the instance was changed", running.Generation)
	}
	if c := cond(t, running.Status, etcdaas.ConditionDegraded); c.Status != metav1.ConditionFalse {
		t.Errorf("Degraded once restored: %+v", c)
	}
}
