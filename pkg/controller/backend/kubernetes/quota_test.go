package kubernetes

import (
	"context"
	"strconv"
	"testing"

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
