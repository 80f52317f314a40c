package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The seed step runs in every pod of the StatefulSet; only the member it names is seeded, and
// a configuration that does not name that member in the new cluster is refused.
func TestSeedMemberOnlySeedsTheNamedMember(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	args := []string{"--id=x", "--member=db-0", "--data-dir=" + data, "--s3-endpoint=http://127.0.0.1:1", "--s3-bucket=b",
		"--key=20261129T000000.000Z-r1.db", "--sha256=00", "--initial-cluster=db-0=http://db-0:2380"}
	if err := seedMember(context.Background(), append(args, "--pod-name=db-1"), func(string) string { return "" }); err != nil {
		t.Fatalf("another member's pod: %v", err)
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Fatalf("another member's pod touched the data directory: %v", err)
	}
	err := seedMember(context.Background(), append(args, "--pod-name=db-0", "--initial-cluster=db-1=http://db-1:2380"), func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), `does not name member "db-0"`) {
		t.Fatalf("a cluster without the member: %v", err)
	}
	err = seedMember(context.Background(), append(args, "--pod-name=db-0"), func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), "credentials are missing") {
		t.Fatalf("no credentials in the environment: %v", err)
	}
}

// A recovery's seed step reads no S3 destination: from its own data it needs no credentials;
// both recovery sources at once are refused.
func TestSeedMemberRecoverySources(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	args := []string{"--id=recover-1", "--member=db-0", "--pod-name=db-0", "--data-dir=" + data, "--initial-cluster=db-0=http://db-0:2380"}
	err := seedMember(context.Background(), append(args, "--from-own-data"), func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), "member db-0 has no database") {
		t.Fatalf("from its own data, without a database: %v", err)
	}
	err = seedMember(context.Background(), append(args, "--from-own-data", "--from-member=http://db-2:2379"), func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), "exclude each other") {
		t.Fatalf("both sources: %v", err)
	}
	err = seedMember(context.Background(), append(args, "--from-member=http://127.0.0.1:1", "--client-cert=/nonexistent/client.crt", "--client-key=/nonexistent/client.key"), func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), "loading the client certificate") {
		t.Fatalf("an unreadable client certificate: %v", err)
	}
}
