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
