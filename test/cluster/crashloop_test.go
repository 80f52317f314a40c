package cluster

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/test/e2e/framework"
)

// testMemberFailing corrupts a member's database file on its volume (the node's hostPath)
// and restarts its pod: etcd cannot open the file, the container crash loops, and once that
// lasted longer than the tier's --member-repair-grace-period the controller replaces the
// member (a new member ID at the same ordinal, on a new volume). The new member serves every
// key from its own data, and a MemberReplaced Event says why.
func testMemberFailing(t *testing.T, e *etcdaasInstall, ns, name string, figs *figures) {
	ctx := t.Context()
	victim := name + "-2"
	clientURL := fmt.Sprintf("--endpoints=http://%s.%s.svc.cluster.local:2379", name, ns)
	e.mustClient(t, ns, "put-before-member-failing", "", clientURL, "put", "/before-member-failing", "kept")
	before := mustInstance(t, e, ns, name)
	oldID := before.Status.Members[2].ID

	start := time.Now()
	e.corruptDB(t, ns, "data-"+victim)
	mustRun(t, e.kubectl(skewKubectl), "", "delete", "pod", victim, "-n", ns, "--wait=false")
	var inst *v1beta1.ETCDInstance
	err := framework.Poll(ctx, 500*time.Millisecond, 5*time.Minute, victim+" replaced", func(ctx context.Context) (bool, error) {
		var err error
		if inst, err = e.getInstance(ctx, ns, name); err != nil {
			return false, err
		}
		if !settled(inst, 3) || inst.Status.Members[2].ID == oldID {
			return false, fmt.Errorf("%s (old ID of %s: %s)", describe(inst), victim, oldID)
		}
		return true, nil
	})
	if err != nil {
		dumpNamespace(t, e.c, ns)
		t.Fatal(err)
	}
	figs.add(t, "member crash looping -> replaced", time.Since(start))
	member := fmt.Sprintf("--endpoints=http://%s.%s-peers.%s.svc.cluster.local:2379", victim, name, ns)
	for key, want := range map[string]string{"/before-member-failing": "kept", "/greeting": "written-at-3"} {
		if got := e.mustClient(t, ns, "get-after-member-failing", "", member, "get", key, "--consistency=s", "--print-value-only"); got != want {
			t.Errorf("the new %s does not hold the data: %s = %q, want %q", victim, key, got, want)
		}
	}
	selector := fields.Set{"regarding.name": name, "reason": "MemberReplaced"}.AsSelector().String()
	if err := pollEvents(ctx, e, ns, selector, fmt.Sprintf("Replaced member %s (ID %s)", victim, oldID)); err != nil {
		t.Error(err)
	}
	if err := pollEvents(ctx, e, ns, selector, "longer than the grace period"); err != nil {
		t.Error(err)
	}
}

// corruptDB replaces the database file on the volume of claim with random bytes, owned and
// permitted as the original. The running member keeps the file it has open; its next start
// finds the corrupt one.
func (e *etcdaasInstall) corruptDB(t *testing.T, ns, claim string) {
	t.Helper()
	pvc, err := e.c.Kube.CoreV1().PersistentVolumeClaims(ns).Get(t.Context(), claim, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pv, err := e.c.Kube.CoreV1().PersistentVolumes().Get(t.Context(), pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pv.Spec.HostPath == nil {
		t.Fatalf("volume %s of %s is not a hostPath volume", pv.Name, claim)
	}
	db := filepath.Join(pv.Spec.HostPath.Path, "data", "member", "snap", "db")
	st, err := os.Stat(db)
	if err != nil {
		t.Fatal(err)
	}
	garbage := make([]byte, 1<<20)
	if _, err := rand.Read(garbage); err != nil {
		t.Fatal(err)
	}
	tmp := db + ".corrupt"
	if err := os.WriteFile(tmp, garbage, st.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		if err := os.Chown(tmp, int(sys.Uid), int(sys.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Rename(tmp, db); err != nil {
		t.Fatal(err)
	}
}
