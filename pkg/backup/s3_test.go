package backup

import (
	"context"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/etcdaas/etcdaas/test/s3server"
)

func TestS3(t *testing.T) {
	store := s3server.Start(t)
	dest, err := NewS3(S3Config{Endpoint: store.Endpoint, Bucket: store.Bucket, Prefix: "default/my-etcd",
		AccessKeyID: store.AccessKeyID, SecretAccessKey: store.SecretAccessKey})
	if err != nil {
		t.Fatal(err)
	}
	testDestination(t, dest)

	// The bucket holds the two kept backups (one per instance) with their provenance as object metadata, and no
	// incomplete upload.
	client, err := store.Client()
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for obj := range client.ListObjects(context.Background(), store.Bucket, minio.ListObjectsOptions{Recursive: true, WithMetadata: true}) {
		if obj.Err != nil {
			t.Fatal(obj.Err)
		}
		keys = append(keys, obj.Key)
		st, err := client.StatObject(context.Background(), store.Bucket, obj.Key, minio.StatObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// testDestination leaves one backup of each of two instances sharing the prefix.
		if uid := st.UserMetadata[MetaInstanceUID]; len(st.UserMetadata[MetaSHA256]) != 64 || (uid != "uid-1" && uid != "uid-other") {
			t.Errorf("%s carries metadata %v, want its provenance", obj.Key, st.UserMetadata)
		}
	}
	if len(keys) != 2 {
		t.Fatalf("bucket holds %v, want the two kept backups", keys)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "default/my-etcd/") || strings.Contains(k, incompletePrefix) {
			t.Errorf("unexpected object %s", k)
		}
	}
}

func TestS3WrongCredentials(t *testing.T) {
	store := s3server.Start(t)
	for name, cfg := range map[string]S3Config{
		"unknown key":  {AccessKeyID: "nobody", SecretAccessKey: store.SecretAccessKey},
		"wrong secret": {AccessKeyID: store.AccessKeyID, SecretAccessKey: "wrong-secret"},
	} {
		cfg.Endpoint, cfg.Bucket = store.Endpoint, store.Bucket
		dest, err := NewS3(cfg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = dest.List(context.Background())
		if err == nil || !strings.Contains(err.Error(), "S3") {
			t.Errorf("%s: listing gave %v, want an error naming the S3 credentials", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
	if _, err := NewS3(S3Config{Endpoint: store.Endpoint, Bucket: store.Bucket}); err == nil || !strings.Contains(err.Error(), "credentials are missing") {
		t.Errorf("missing credentials: %v", err)
	}
}
