package kubernetes

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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

	receive := func(id string) (*snapshot.Staged, string) {
		t.Helper()
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
	first, firstPath := receive("r1")
	second, secondPath := receive("r2")
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
	if err != nil || req == nil || req.ID != "r1" || req.S3.Prefix != "ns/db/"+RestoresPrefix || req.Info.SHA256 != first.Info.SHA256 {
		t.Fatalf("recorded request = %+v, %v", req, err)
	}
	// Only the first upload is left in the staging area, with its provenance.
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

// v1beta1Dest is the staging area a request records, as a destination to resolve.
func v1beta1Dest(req *RestoreRequest) v1beta1.BackupDestination {
	s3 := req.S3
	return v1beta1.BackupDestination{S3: &s3}
}
