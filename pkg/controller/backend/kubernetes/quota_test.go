package kubernetes

import (
	"context"
	"slices"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
)

// TestMemberQuotaFitsItsVolume: etcd's default quota is 2 GiB and a member's volume is 1 GiB
// unless spec.storage.size says otherwise. With the default quota, the database of a busy
// instance fills the volume before etcd raises its NOSPACE alarm: the write fails with ENOSPC,
// etcd stops, and since every member holds the same data every member stops the same way, a
// cluster that would otherwise have refused writes until keys are deleted and compacted. The
// members run with a quota that leaves the volume room for the write-ahead log and for the
// copy a defragmentation writes, and the quota exported for the alerts is theirs.
func TestMemberQuotaFitsItsVolume(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		size string // "" for the default volume
		want int64
	}{
		{"", 256 << 20},
		{"2Gi", 768 << 20},
		{"512Mi", 128 << 20},
		{"50Gi", backend.DefaultQuotaBackendBytes},
	} {
		t.Run("size="+tc.size, func(t *testing.T) {
			client := fake.NewClientset()
			b, err := New(Options{Client: client})
			if err != nil {
				t.Fatal(err)
			}
			inst := testInstance()
			inst.Spec.Storage = nil
			if tc.size != "" {
				inst.Spec.Storage = &v1beta1.StorageSpec{VolumeSize: ptr.To(resource.MustParse(tc.size))}
			}
			if _, err := b.Sync(ctx, inst); err != nil {
				t.Fatal(err)
			}
			sts, err := client.AppsV1().StatefulSets("ns").Get(ctx, "db", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			volume := sts.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests.Storage().Value()
			quota, err := strconv.ParseInt(env(t, sts.Spec.Template.Spec.Containers[0], "ETCD_QUOTA_BACKEND_BYTES"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			if quota != tc.want {
				t.Errorf("volume %d bytes: quota %d, want %d", volume, quota, tc.want)
			}
			// The database at its quota, a defragmentation's copy of it and the write-ahead
			// log fit the volume.
			if 2*quota+min(walReserve, volume/2) > volume {
				t.Errorf("volume %d bytes cannot hold a database of %d bytes, its defragmentation and the write-ahead log", volume, quota)
			}
			if got := backend.QuotaBackendBytes(b, inst); got != quota {
				t.Errorf("quota exported for the alerts %d, the members run with %d", got, quota)
			}
		})
	}
}

// TestAControllerUpgradeKeepsTheQuotaOfRunningMembers: an instance made by a controller from
// before the quota followed the volume has a StatefulSet whose pods set no quota, so its
// members run with etcd's default of 2 GiB, and their databases may be larger than what the
// volume's quota would be (256 MiB for 1Gi). The first Sync of this controller rewrites the
// template of a one-member instance (it no longer starts a new cluster), as any membership
// change does: with the volume's quota in it, the next pod made from it (a node drained, a
// version roll) found its database above its quota, raised the NOSPACE alarm and refused
// every write, and the quota exported for the alerts (256 MiB) was not the members' (2 GiB),
// so EtcdaasMemberDatabaseQuotaExhausted fired while writes went on. Such an instance keeps
// etcd's default; a new one gets its volume's quota.
func TestAControllerUpgradeKeepsTheQuotaOfRunningMembers(t *testing.T) {
	ctx := context.Background()
	f := oneGiFixture(t)
	if got := backend.QuotaBackendBytes(f.b, f.inst); got != 256<<20 {
		t.Fatalf("a new instance's quota %d, want %d", got, 256<<20)
	}
	// As an older controller wrote it: no quota in the pod template.
	sts, err := f.client.AppsV1().StatefulSets("ns").Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := &sts.Spec.Template.Spec.Containers[0]
	c.Env = slices.DeleteFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == quotaEnv })
	if _, err := f.client.AppsV1().StatefulSets("ns").Update(ctx, sts, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	if res, err := f.b.Sync(ctx, f.inst); err != nil || !res.Converged {
		t.Fatalf("sync: %+v, %v", res, err)
	}
	sts, err = f.client.AppsV1().StatefulSets("ns").Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c = &sts.Spec.Template.Spec.Containers[0]
	if state := env(t, *c, "ETCD_INITIAL_CLUSTER_STATE"); state != "existing" {
		t.Fatalf("the template was not rewritten: cluster state %q", state)
	}
	if i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == quotaEnv }); i >= 0 {
		t.Errorf("the rewritten template lowers the quota of members running with etcd's default to %s bytes", c.Env[i].Value)
	}
	if got := backend.QuotaBackendBytes(f.b, f.inst); got != backend.DefaultQuotaBackendBytes {
		t.Errorf("quota exported for the alerts %d, the members run with etcd's default %d", got, backend.DefaultQuotaBackendBytes)
	}
	// The quota of a new instance is its volume's at every look, not only at its creation.
	g := oneGiFixture(t)
	if _, err := g.b.Sync(ctx, g.inst); err != nil {
		t.Fatal(err)
	}
	if got := backend.QuotaBackendBytes(g.b, g.inst); got != 256<<20 {
		t.Errorf("a new instance's quota after a Sync %d, want %d", got, 256<<20)
	}
}

// oneGiFixture is a converged one-member instance whose volumes are of 1Gi, for which the
// volume's quota (256 MiB) is below etcd's default.
func oneGiFixture(t *testing.T) *stepsFixture {
	t.Helper()
	f := newStepsFixture(t, 1, 1, 1, healthyCluster(1))
	f.inst.Spec.Storage.VolumeSize = ptr.To(resource.MustParse("1Gi"))
	return f
}
