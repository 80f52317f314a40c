package v1beta1

import (
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"k8s.io/apimachinery/pkg/runtime"
)

// DefaultReplicas is the number of members a v1beta1 ETCDInstance gets when spec.replicas
// is not set: the smallest cluster that survives the loss of one member.
const DefaultReplicas int32 = 3

// DefaultBackupKeep is how many backups a destination keeps when spec.backup.keep is not set:
// a week of daily backups.
const DefaultBackupKeep int32 = 7

func addDefaultingFuncs(scheme *runtime.Scheme) error {
	return RegisterDefaults(scheme)
}

// SetDefaults_ETCDInstanceSpec fills the unset fields of a v1beta1 spec.
func SetDefaults_ETCDInstanceSpec(obj *ETCDInstanceSpec) {
	if obj.Replicas == nil {
		replicas := DefaultReplicas
		obj.Replicas = &replicas
	}
	if obj.Version == "" {
		obj.Version = etcdaas.DefaultVersion
	}
}

// SetDefaults_BackupSpec fills the unset fields of a v1beta1 backup spec.
func SetDefaults_BackupSpec(obj *BackupSpec) {
	if obj.Keep == nil {
		keep := DefaultBackupKeep
		obj.Keep = &keep
	}
}
