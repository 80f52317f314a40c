package controller

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	kubefake "k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/backup"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	"github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned/fake"
	"github.com/etcdaas/etcdaas/pkg/snapshot/snapshottest"
)

// restoreInstance is an instance whose UID is its name followed by "-uid".
func restoreInstance(ns, name string, spec v1beta1.ETCDInstanceSpec) *v1beta1.ETCDInstance {
	return &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(name + "-uid")}, Spec: spec}
}

// TestBackupRestoreSource opens the newest or the named backup of the source instance with
// its provenance, and explains each source it cannot restore from with its own reason.
func TestBackupRestoreSource(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	localBackup := &v1beta1.BackupSpec{Schedule: "* * * * *", Destination: v1beta1.BackupDestination{Local: &v1beta1.LocalDestination{}}}
	s3Backup := &v1beta1.BackupSpec{Schedule: "* * * * *", Destination: v1beta1.BackupDestination{S3: &v1beta1.S3Destination{
		Endpoint: "https://127.0.0.1:1", Bucket: "b"}}}
	client := fake.NewClientset(
		restoreInstance("ns", "old", v1beta1.ETCDInstanceSpec{Backup: localBackup}),
		restoreInstance("ns", "empty", v1beta1.ETCDInstanceSpec{Backup: localBackup}),
		restoreInstance("ns", "plain", v1beta1.ETCDInstanceSpec{}),
		restoreInstance("ns", "s3", v1beta1.ETCDInstanceSpec{Backup: s3Backup}),
		restoreInstance("ns", "reborn", v1beta1.ETCDInstanceSpec{Backup: localBackup}),
	)
	taken := takeRestoreSourceBackups(t, root)
	src := BackupRestoreSource{Client: client, Resolver: backup.Resolver{LocalRoot: root, Credentials: backup.EnvCredentials{Lookup: func(string) (string, bool) { return "", false }}}}

	open := func(from v1beta1.RestoreSource) (string, *backend.BackupProvenance, error) {
		body, prov, err := src.OpenRestoreSource(ctx, restoreInstance("ns", "new", v1beta1.ETCDInstanceSpec{RestoreFrom: &from}))
		if err != nil {
			return "", nil, err
		}
		defer func() { _ = body.Close() }()
		b, err := io.ReadAll(body)
		return string(b), prov, err
	}
	for _, c := range []struct {
		key, body string
		want      backup.Info
	}{{"", "second", taken[1]}, {taken[0].Key, "first", taken[0]}} {
		body, prov, err := open(v1beta1.RestoreSource{Instance: "old", Key: c.key})
		if err != nil {
			t.Fatalf("key %q: %v", c.key, err)
		}
		if body != string(snapshottest.WithHash([]byte(c.body))) || prov.Key != c.want.Key || prov.SHA256 != c.want.SHA256 || prov.Revision != c.want.Revision {
			t.Errorf("key %q: %q %+v, want %q %+v", c.key, body, prov, c.body, c.want)
		}
	}

	for _, c := range []struct {
		from   v1beta1.RestoreSource
		reason string
	}{
		{v1beta1.RestoreSource{Instance: "old", Key: "20000101T000000.000Z-r1.db"}, ReasonBackupNotFound},
		{v1beta1.RestoreSource{Instance: "gone"}, ReasonRestoreSourceNotFound},
		{v1beta1.RestoreSource{Instance: "plain"}, ReasonRestoreSourceNoDestination},
		{v1beta1.RestoreSource{Instance: "empty"}, ReasonNoBackups},
		{v1beta1.RestoreSource{Instance: "reborn"}, ReasonNoBackups},
		{v1beta1.RestoreSource{Instance: "s3"}, ReasonRestoreSourceMisconfigured},
	} {
		_, _, err := open(c.from)
		pe, ok := backend.IsPermanent(err)
		if !ok || pe.Reason != c.reason || !strings.Contains(pe.Message, c.from.Instance) {
			t.Errorf("%+v: %v, want a permanent %s naming the source", c.from, err, c.reason)
		}
	}
}

// takeRestoreSourceBackups takes, in the local backups under root, the two backups of
// instance ns/old it returns ("first" and "second", a minute apart), a newer one of another
// instance sharing its destination, and one of an earlier instance named ns/reborn.
func takeRestoreSourceBackups(t *testing.T, root string) []backup.Info {
	t.Helper()
	ctx := context.Background()
	dir, err := backup.LocalDir(root, "ns", "old")
	if err != nil {
		t.Fatal(err)
	}
	dest := backup.NewLocal(dir)
	start := time.Date(2026, 11, 29, 3, 0, 0, 0, time.UTC)
	var taken []backup.Info
	for i, body := range []string{"first", "second"} {
		now := func() time.Time { return start.Add(time.Duration(i) * time.Minute) }
		info, err := backup.Take(ctx, dest, backup.Snapshot{Reader: bytes.NewReader(snapshottest.WithHash([]byte(body))), Revision: int64(10 + i)}, "old-uid", now)
		if err != nil {
			t.Fatal(err)
		}
		taken = append(taken, info)
	}
	// A newer backup in the same place that another instance (sharing the destination) took:
	// the newest backup of "old" is still its own.
	later := func() time.Time { return start.Add(time.Hour) }
	if _, err := backup.Take(ctx, dest, backup.Snapshot{Reader: bytes.NewReader(snapshottest.WithHash([]byte("foreign"))), Revision: 99}, "other-uid", later); err != nil {
		t.Fatal(err)
	}
	// "reborn" replaced an earlier instance of its name, whose backups are still there.
	rebornDir, err := backup.LocalDir(root, "ns", "reborn")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Take(ctx, backup.NewLocal(rebornDir), backup.Snapshot{Reader: bytes.NewReader(snapshottest.WithHash([]byte("earlier"))), Revision: 3}, "earlier-uid", later); err != nil {
		t.Fatal(err)
	}
	return taken
}

// TestLocateRestoreSource: a source in a server's local directory is refused for members that
// read the backup themselves, and the other refusals keep their reasons. (The cluster tier
// restores from a real S3 destination.)
func TestLocateRestoreSource(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s3 := &v1beta1.BackupSpec{Schedule: "* * * * *", Destination: v1beta1.BackupDestination{S3: &v1beta1.S3Destination{
		Endpoint: "https://127.0.0.1:1", Bucket: "b", CredentialsSecretRef: &v1beta1.SecretReference{Name: "creds"}}}}
	local := &v1beta1.BackupSpec{Schedule: "* * * * *", Destination: v1beta1.BackupDestination{Local: &v1beta1.LocalDestination{}}}
	client := fake.NewClientset(
		restoreInstance("ns", "s3", v1beta1.ETCDInstanceSpec{Backup: s3}),
		restoreInstance("ns", "local", v1beta1.ETCDInstanceSpec{Backup: local}),
		restoreInstance("ns", "unprotected", v1beta1.ETCDInstanceSpec{}),
	)
	dir, err := backup.LocalDir(root, "ns", "local")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Take(ctx, backup.NewLocal(dir), backup.Snapshot{Reader: bytes.NewReader(snapshottest.WithHash([]byte("x"))), Revision: 1}, "local-uid", time.Now); err != nil {
		t.Fatal(err)
	}
	src := BackupRestoreSource{Client: client, Resolver: backup.Resolver{LocalRoot: root}}
	locate := func(from string) (*backend.RemoteBackup, error) {
		return src.LocateRestoreSource(ctx, restoreInstance("ns", "new", v1beta1.ETCDInstanceSpec{RestoreFrom: &v1beta1.RestoreSource{Instance: from}}))
	}
	if _, err := locate("local"); !isPermanent(err, ReasonRestoreSourceUnreachable) {
		t.Errorf("a local source: %v, want %s", err, ReasonRestoreSourceUnreachable)
	}
	if _, err := locate("gone"); !isPermanent(err, ReasonRestoreSourceNotFound) {
		t.Errorf("a missing source: %v, want %s", err, ReasonRestoreSourceNotFound)
	}
	if _, err := locate("unprotected"); !isPermanent(err, ReasonRestoreSourceNoDestination) {
		t.Errorf("a source without spec.backup: %v, want %s", err, ReasonRestoreSourceNoDestination)
	}
	// The S3 destination cannot be read without credentials: the open's reason stands.
	if _, err := locate("s3"); !isPermanent(err, ReasonRestoreSourceMisconfigured) {
		t.Errorf("an unreadable S3 source: %v, want %s", err, ReasonRestoreSourceMisconfigured)
	}
}

// TestRestoreSourceSecretUnavailableForNow: a credentials Secret of the source's S3
// destination that the Kubernetes API cannot give for now (unavailable, a timeout) is not a
// permanent failure of the new instance, although its error is about credentials too: it is
// retried with backoff. A Secret that does not exist stays permanent.
func TestRestoreSourceSecretUnavailableForNow(t *testing.T) {
	ctx := context.Background()
	s3 := &v1beta1.BackupSpec{Schedule: "* * * * *", Destination: v1beta1.BackupDestination{S3: &v1beta1.S3Destination{
		Endpoint: "https://127.0.0.1:1", Bucket: "b", CredentialsSecretRef: &v1beta1.SecretReference{Name: "creds"}}}}
	client := fake.NewClientset(restoreInstance("ns", "s3", v1beta1.ETCDInstanceSpec{Backup: s3}))
	inst := restoreInstance("ns", "new", v1beta1.ETCDInstanceSpec{RestoreFrom: &v1beta1.RestoreSource{Instance: "s3"}})
	for _, secretErr := range []error{
		apierrors.NewServiceUnavailable("etcd is down"),
		apierrors.NewTimeoutError("request did not complete within requested timeout", 0),
	} {
		secrets := kubefake.NewClientset()
		secrets.PrependReactor("get", "secrets", func(clienttesting.Action) (bool, runtime.Object, error) {
			return true, nil, secretErr
		})
		src := BackupRestoreSource{Client: client, Resolver: backup.Resolver{Credentials: backup.SecretCredentials{Client: secrets}}}
		_, _, err := src.OpenRestoreSource(ctx, inst)
		if pe, ok := backend.IsPermanent(err); ok || !errors.Is(err, backup.ErrStoreUnavailable) {
			t.Errorf("open with the Secret read failing with %q: %v (permanent %+v), want a retried ErrStoreUnavailable", secretErr, err, pe)
		}
		if _, err := src.LocateRestoreSource(ctx, inst); isPermanent(err, ReasonRestoreSourceMisconfigured) || !errors.Is(err, backup.ErrStoreUnavailable) {
			t.Errorf("locate with the Secret read failing with %q: %v, want a retried ErrStoreUnavailable", secretErr, err)
		}
	}
	src := BackupRestoreSource{Client: client, Resolver: backup.Resolver{Credentials: backup.SecretCredentials{Client: kubefake.NewClientset()}}}
	if _, _, err := src.OpenRestoreSource(ctx, inst); !isPermanent(err, ReasonRestoreSourceMisconfigured) {
		t.Errorf("open with no Secret: %v, want a permanent %s", err, ReasonRestoreSourceMisconfigured)
	}
}

func isPermanent(err error, reason string) bool {
	pe, ok := backend.IsPermanent(err)
	return ok && pe.Reason == reason
}

// TestInstancesRestoringFromASourceAreQueuedWhenItCanHelp: an instance waiting for its
// spec.restoreFrom source is looked at again when the source appears, changes spec.backup or
// records a new backup, not at every other change of the source.
func TestInstancesRestoringFromASourceAreQueuedWhenItCanHelp(t *testing.T) {
	c, err := New(Options{Client: fake.NewClientset(), Backend: &fakeBackend{}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.queue.ShutDown()
	backupSpec := &v1beta1.BackupSpec{Schedule: "@hourly", Destination: v1beta1.BackupDestination{Local: &v1beta1.LocalDestination{}}}
	source := restoreInstance("ns", "old", v1beta1.ETCDInstanceSpec{Backup: backupSpec})
	for _, inst := range []*v1beta1.ETCDInstance{
		source,
		restoreInstance("ns", "new", v1beta1.ETCDInstanceSpec{RestoreFrom: &v1beta1.RestoreSource{Instance: "old"}}),
		restoreInstance("ns", "unrelated", v1beta1.ETCDInstanceSpec{RestoreFrom: &v1beta1.RestoreSource{Instance: "elsewhere"}}),
		restoreInstance("other", "new", v1beta1.ETCDInstanceSpec{RestoreFrom: &v1beta1.RestoreSource{Instance: "old"}}),
	} {
		if err := c.informer.GetIndexer().Add(inst); err != nil {
			t.Fatal(err)
		}
	}
	queued := func() []string {
		var keys []string
		for c.queue.Len() > 0 {
			key, _ := c.queue.Get()
			c.queue.Done(key)
			keys = append(keys, key)
		}
		return keys
	}
	healthier := source.DeepCopy()
	healthier.Status.ReadyReplicas = 3
	backedUp := healthier.DeepCopy()
	backedUp.Status.Backup = &v1beta1.BackupStatus{LastBackup: &v1beta1.BackupInfo{Key: "20261129T160000.000Z-r7.db"}}
	moved := source.DeepCopy()
	moved.Spec.Backup = &v1beta1.BackupSpec{Schedule: "@daily", Destination: backupSpec.Destination}
	for _, tc := range []struct {
		name     string
		old, obj *v1beta1.ETCDInstance
		want     []string
	}{
		{"the source is created", nil, source, []string{"ns/new"}},
		{"the source's members become ready", source, healthier, nil},
		{"a resync", backedUp, backedUp, nil},
		{"the source records a backup", healthier, backedUp, []string{"ns/new"}},
		{"the source's spec.backup changes", source, moved, []string{"ns/new"}},
		{"an instance nothing restores from", nil, restoreInstance("ns", "new", v1beta1.ETCDInstanceSpec{}), nil},
	} {
		var old any
		if tc.old != nil {
			old = tc.old
		}
		c.enqueueRestoresFrom(old, tc.obj)
		if got := queued(); !slices.Equal(got, tc.want) {
			t.Errorf("%s: queued %q, want %q", tc.name, got, tc.want)
		}
	}
}
