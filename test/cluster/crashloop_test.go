package cluster

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/fields"

	"github.com/etcdaas/etcdaas/test/e2e/framework"
)

// testMaintenance creates a three-member instance of its own for the day-2 maintenance
// scenarios: a member crash looping, replaced; then a defragmentation on demand. Its
// automatic defragmentation waits for 1Gi free (spec.defragmentation), so that no automatic
// round takes the space the defragmentation scenario frees before its command does (the
// default 64Mi is about what it frees).
func testMaintenance(t *testing.T, e *etcdaasInstall, figs *figures) {
	const ns, name = "maintenance", "c1"
	e.createNamespace(t, ns)
	manifest := fmt.Sprintf(instanceManifest, name, ns, 3, false) + "  defragmentation:\n    freeBytes: 1Gi\n"
	mustRun(t, e.kubectl(e.c.Tools[framework.Kubectl]), manifest, "apply", "-f", "-")
	if _, err := e.waitSettled(t.Context(), ns, name, 3, 4*time.Minute, nil); err != nil {
		dumpNamespace(t, e.c, ns)
		t.Fatal(err)
	}
	if !t.Run("member crash looping", func(t *testing.T) { testMemberFailing(t, e, ns, name, figs) }) {
		return
	}
	t.Run("defrag", func(t *testing.T) { testDefrag(t, e, ns, name, figs) })
}

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
	oldID := mustInstance(t, e, ns, name).Status.Members[2].ID

	start := time.Now()
	e.corruptDB(t, ns, "data-"+victim)
	mustRun(t, e.kubectl(skewKubectl), "", "delete", "pod", victim, "-n", ns, "--wait=false")
	awaitReplacement(t, e, ns, name, 2, oldID, 5*time.Minute)
	figs.add(t, "member crash looping -> replaced", time.Since(start))
	checkReplacement(t, e, ns, name, 2, oldID, "member-failing", map[string]string{"/before-member-failing": "kept"})
	selector := fields.Set{"regarding.name": name, "reason": "MemberReplaced"}.AsSelector().String()
	if err := pollEvents(ctx, e, ns, selector, "longer than the grace period"); err != nil {
		t.Error(err)
	}
}

// corruptDB replaces the database file on the volume of claim with random bytes, owned and
// permitted as the original. The running member keeps the file it has open; its next start
// finds the corrupt one.
func (e *etcdaasInstall) corruptDB(t *testing.T, ns, claim string) {
	t.Helper()
	db := filepath.Join(e.hostPathOf(t, ns, claim), "data", "member", "snap", "db")
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
