package kubernetes

import (
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

var _ backend.Quota = &Backend{}

// QuotaBackendBytes implements backend.Quota: the quota the members of inst run with, set
// from their volume's size (quotaBackendBytes).
func (b *Backend) QuotaBackendBytes(inst *v1beta1.ETCDInstance) int64 {
	return quotaBackendBytes(inst)
}
