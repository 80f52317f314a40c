package kubernetes

import (
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
)

// walReserve is the room a member's volume keeps for what is not its database: etcd keeps
// five write-ahead log files of 64 MiB and preallocates the next, and writes raft snapshot
// files beside them.
const walReserve int64 = 512 << 20

// quotaBackendBytes is the database quota (etcd's --quota-backend-bytes) of the members of
// inst, from the size of their volumes: half of what the write-ahead log leaves, since a
// defragmentation writes a copy of the data in use beside the database before it replaces
// it, and at most etcd's default quota. A quota above what the volume holds would let the
// database fill the disk before etcd raises its NOSPACE alarm: etcd then stops on the failed
// write, on every member at once since they hold the same data, instead of refusing writes
// until keys are deleted and compacted. The volume's size cannot change (validation), so
// neither does the quota.
func quotaBackendBytes(inst *v1beta1.ETCDInstance) int64 {
	size := resource.MustParse(DefaultStorageSize)
	if s := inst.Spec.Storage; s != nil && s.VolumeSize != nil {
		size = *s.VolumeSize
	}
	bytes := size.Value()
	reserve := min(walReserve, bytes/2)
	return max(min((bytes-reserve)/2, backend.DefaultQuotaBackendBytes), 1)
}

// quotaEnv sets a member's database quota (etcd's --quota-backend-bytes).
const quotaEnv = "ETCD_QUOTA_BACKEND_BYTES"

// legacyQuota reports whether sts, an instance's StatefulSet, was made by a controller from
// before the quota followed the volume: its pod template sets no quota, so its members run
// with etcd's default. Its templates keep it so: a member made anew from a template with the
// volume's quota (after a node drain, say, or in a version roll) could find its database
// already larger than that quota, which raises the NOSPACE alarm and stops every write of
// the cluster. A StatefulSet not made yet (nil, or the empty one a failed Get returns) is not.
func legacyQuota(sts *appsv1.StatefulSet) bool {
	if sts == nil {
		return false
	}
	_, made := templateEnv(sts, "ETCD_NAME")
	_, set := templateEnv(sts, quotaEnv)
	return made && !set
}

// templateQuota is the database quota the members of inst run with, by sts's pod template:
// etcd's default for a template that sets none (legacyQuota), else the volume's.
func templateQuota(sts *appsv1.StatefulSet, inst *v1beta1.ETCDInstance) int64 {
	if legacyQuota(sts) {
		return backend.DefaultQuotaBackendBytes
	}
	return quotaBackendBytes(inst)
}

var _ backend.Quota = &Backend{}

// QuotaBackendBytes implements backend.Quota: the quota the members of inst run with, as
// their StatefulSet's template was last seen (templateQuota), else the one set from their
// volume's size (quotaBackendBytes).
func (b *Backend) QuotaBackendBytes(inst *v1beta1.ETCDInstance) int64 {
	if q, ok := b.quotas.Load(inst.Namespace + "/" + inst.Name); ok {
		return q.(int64)
	}
	return quotaBackendBytes(inst)
}
