package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckDiskRoomKeepsTheKubeletAboveItsEvictionThreshold(t *testing.T) {
	const gi = 1 << 30
	// 252 GiB: the kubelet evicts below 2.52 GiB free, and the tier writes up to 6 GiB.
	if err := checkDiskRoom("/tmp", 252*gi, 9*gi); err != nil {
		t.Errorf("9 GiB free of 252: %v", err)
	}
	err := checkDiskRoom("/tmp", 252*gi, 3*gi)
	if err == nil {
		t.Fatal("3 GiB free of 252 accepted: the kubelet would evict pods during the run")
	}
	for _, want := range []string{"3.0 GiB free", "needs 8.5 GiB", "1%", "/tmp/etcdaas-cluster-*"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestTrimWorkDirKeepsLogsAndConfiguration(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"logs/kubelet.log", "pod-logs/ns_p_uid/c/0.log", "kubelet.yaml", "pki/ca.crt",
		"containerd/root/blob", "images/etcd.tar", "volumes/pv-1/member/snap/db", "kubelet/pods/uid/x"} {
		path := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := trimWorkDir(dir); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, e := range entries {
		kept = append(kept, e.Name())
	}
	if strings.Join(kept, " ") != "kubelet.yaml logs pki pod-logs" {
		t.Errorf("kept %v, want the logs and configuration only", kept)
	}
}
