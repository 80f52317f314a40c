package v1beta1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// +genclient
// +genclient:method=GetScale,verb=get,subresource=scale,result=k8s.io/api/autoscaling/v1.Scale
// +genclient:method=UpdateScale,verb=update,subresource=scale,input=k8s.io/api/autoscaling/v1.Scale,result=k8s.io/api/autoscaling/v1.Scale
// +genclient:method=ListBackups,verb=get,subresource=backups,result=github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1.ETCDInstanceBackupList
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ETCDInstance is an etcd cluster run for you by etcdaas. Create one and the controller
// starts its members, keeps them healthy, scales them one member at a time and removes them
// when the ETCDInstance is deleted.
type ETCDInstance struct {
	metav1.TypeMeta `json:",inline"`
	// Standard object metadata. The name is a DNS-1035 label of at most 50 characters.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty" protobuf:"bytes,1,opt,name=metadata"`

	// Spec is the etcd cluster you ask for.
	// +optional
	Spec ETCDInstanceSpec `json:"spec,omitempty" protobuf:"bytes,2,opt,name=spec"`
	// Status is the etcd cluster as the controller last observed it. Read-only for users;
	// the controller writes it through the status subresource.
	// +optional
	Status ETCDInstanceStatus `json:"status,omitempty" protobuf:"bytes,3,opt,name=status"`
}

// ETCDInstanceSpec holds what you choose for a cluster; the controller changes the running
// members to match it.
type ETCDInstanceSpec struct {
	// Replicas is the number of etcd members, from 1 to 9. Defaults to 3. Odd numbers are
	// recommended: an even number tolerates no more failures than the odd number below it.
	// Changed one member at a time; also set through the scale subresource.
	// +optional
	Replicas *int32 `json:"replicas,omitempty" protobuf:"varint,1,opt,name=replicas"`
	// Version is the etcd version to run: a minor version such as "3.7" (the release the
	// controller runs for it) or a release such as "3.7.3". Defaults to the version the
	// controller runs by default. A change rolls the members one at a time, the leader last,
	// and may only go to the same or the next minor version of the lowest version the
	// members report; downgrades are refused.
	// +optional
	Version string `json:"version,omitempty" protobuf:"bytes,2,opt,name=version"`
	// TLS turns on client and peer TLS. Absent means plaintext. Immutable after creation.
	// +optional
	TLS *TLSSpec `json:"tls,omitempty" protobuf:"bytes,3,opt,name=tls"`
	// Storage configures each member's persistent volume on the kubernetes backend.
	// Immutable after creation.
	// +optional
	Storage *StorageSpec `json:"storage,omitempty" protobuf:"bytes,4,opt,name=storage"`
	// Backup schedules backups of the cluster's data to a destination. Absent means no
	// scheduled backups (the backup subresource still streams one on demand).
	// +optional
	Backup *BackupSpec `json:"backup,omitempty" protobuf:"bytes,5,opt,name=backup"`
	// RestoreFrom makes a new cluster start from a backup of another instance instead of
	// empty. Set at creation only; immutable.
	// +optional
	RestoreFrom *RestoreSource `json:"restoreFrom,omitempty" protobuf:"bytes,6,opt,name=restoreFrom"`
	// Defragmentation overrides, for this instance, when the controller defragments a
	// member's database on its own. Absent means the controller's defaults.
	// +optional
	Defragmentation *DefragmentationSpec `json:"defragmentation,omitempty" protobuf:"bytes,7,opt,name=defragmentation"`
	// Resources are the compute resources of each member's etcd container, as a container's
	// resources are given: requests and limits of cpu, memory and ephemeral-storage. On the
	// kubernetes backend they are the member pods' requests and limits; a change restarts
	// the members one at a time, as a version change does (followers first, the leader
	// last, each once the member before is healthy again). The local backend (the
	// standalone server) runs its members inside its own process and cannot apply them: it
	// keeps them in the object and ignores them. Absent, or a resource named in neither
	// requests nor limits, means the backend's default request for it: cpu 100m and memory
	// 128Mi, with no limit. A resource with a limit but no request gets a request equal to
	// its limit, as in a pod. Mutable.
	// +optional
	Resources *MemberResources `json:"resources,omitempty" protobuf:"bytes,8,opt,name=resources"`
}

// MemberResources are the compute resources of each member's etcd container. They have the
// shape of a container's resources (requests and limits) without claims: an etcd member
// uses no dynamically allocated device. Keys are resource names: cpu, memory or
// ephemeral-storage (members keep their data on their volume, so ephemeral-storage covers
// only what a container writes elsewhere, such as its logs).
type MemberResources struct {
	// Requests are the resources the scheduler reserves for each member, such as
	// {"cpu": "500m", "memory": "1Gi"}. Each must be at most its limit, when it has one.
	// +optional
	Requests map[string]resource.Quantity `json:"requests,omitempty" protobuf:"bytes,1,rep,name=requests"`
	// Limits are the most each member may use, such as {"memory": "2Gi"}: a member that
	// goes over its memory limit is killed and restarted, one over its cpu limit is slowed
	// down (which may cost it its leadership or its heartbeats).
	// +optional
	Limits map[string]resource.Quantity `json:"limits,omitempty" protobuf:"bytes,2,rep,name=limits"`
}

// DefragmentationSpec says when members are defragmented automatically: once the space that
// compaction freed inside a member's database file (dbSize - dbSizeInUse in its status)
// reaches both freePercent of the file and freeBytes, every member is defragmented in turn
// (they hold the same data), one at a time, followers first and the leader last, each only
// while every member is healthy. Members out of space (a NOSPACE alarm) are also
// defragmented, whatever the thresholds, once the history is compacted; the alarm is
// disarmed once defragmenting a member freed at least freeBytes (etcd raises it again if
// writes still do not fit its quota). The defrag subresource starts such a round on demand,
// whatever the thresholds.
type DefragmentationSpec struct {
	// FreePercent is the share of a member's database file, in percent from 1 to 100, that
	// must be free before the member is defragmented. Defaults to the controller's
	// --defrag-free-percent (50).
	// +optional
	FreePercent *int32 `json:"freePercent,omitempty" protobuf:"varint,1,opt,name=freePercent"`
	// FreeBytes is how much of a member's database file must be free before the member is
	// defragmented, such as "64Mi"; zero or more. Defaults to the controller's
	// --defrag-free-bytes (64Mi).
	// +optional
	FreeBytes *resource.Quantity `json:"freeBytes,omitempty" protobuf:"bytes,2,opt,name=freeBytes"`
}

// BackupSpec schedules backups and says where they go and how many are kept.
type BackupSpec struct {
	// Schedule is when backups run: a cron expression of five fields (minute hour
	// day-of-month month day-of-week), such as "0 */6 * * *", or a descriptor such as
	// "@daily". Always evaluated in UTC. A backup missed while the controller was down runs
	// once when it returns.
	Schedule string `json:"schedule" protobuf:"bytes,1,opt,name=schedule"`
	// Keep is how many of the newest backups the destination keeps, from 1 to 1000.
	// Older ones are deleted only after a new backup succeeded. Defaults to 7.
	// +optional
	Keep *int32 `json:"keep,omitempty" protobuf:"varint,2,opt,name=keep"`
	// Destination is where backups are written: exactly one of s3 or local.
	Destination BackupDestination `json:"destination" protobuf:"bytes,3,opt,name=destination"`
}

// BackupDestination is exactly one place backups are written to.
type BackupDestination struct {
	// S3 writes backups to a bucket of any S3-compatible object store.
	// +optional
	S3 *S3Destination `json:"s3,omitempty" protobuf:"bytes,1,opt,name=s3"`
	// Local writes backups to the server's backup directory, under
	// <backup-dir>/<namespace>/<name>/ (standalone mode and the local backend).
	// +optional
	Local *LocalDestination `json:"local,omitempty" protobuf:"bytes,2,opt,name=local"`
}

// S3Destination is a bucket of an S3-compatible object store. Each backup is one object
// whose key starts with the prefix and sorts by time; its user metadata records the
// instance UID, etcd revision, etcd version, SHA-256 and completion time.
type S3Destination struct {
	// Endpoint is the URL of the object store, such as "https://s3.example.com" or
	// "http://127.0.0.1:8333". Only the scheme, host and port are used.
	Endpoint string `json:"endpoint" protobuf:"bytes,1,opt,name=endpoint"`
	// Bucket is the bucket backups are written to. It must exist.
	Bucket string `json:"bucket" protobuf:"bytes,2,opt,name=bucket"`
	// Prefix is prepended to every key. Defaults to "<namespace>/<name>/".
	// +optional
	Prefix string `json:"prefix,omitempty" protobuf:"bytes,3,opt,name=prefix"`
	// Region is the bucket's region. Empty lets the client use the store's default.
	// +optional
	Region string `json:"region,omitempty" protobuf:"bytes,4,opt,name=region"`
	// CredentialsSecretRef names a Secret in the instance's namespace with the keys
	// accessKeyID and secretAccessKey. Required when the controller runs in a Kubernetes
	// cluster; in standalone mode the server's own credentials are used instead.
	// +optional
	CredentialsSecretRef *SecretReference `json:"credentialsSecretRef,omitempty" protobuf:"bytes,5,opt,name=credentialsSecretRef"`
	// CABundle holds PEM-encoded certificates that verify the endpoint's serving
	// certificate. Empty means the system's trusted roots.
	// +optional
	CABundle string `json:"caBundle,omitempty" protobuf:"bytes,6,opt,name=caBundle"`
}

// LocalDestination writes backups to the server's backup directory. It has no settings: a
// user never chooses a path on the server.
type LocalDestination struct{}

// SecretReference names a Secret in the same namespace as the ETCDInstance.
type SecretReference struct {
	// Name is the name of the Secret.
	Name string `json:"name" protobuf:"bytes,1,opt,name=name"`
}

// RestoreSource names a backup of an instance in the same namespace.
type RestoreSource struct {
	// Instance is the name of the ETCDInstance whose backup destination holds the backup.
	// That instance's spec.backup.destination is read; the instance must exist.
	Instance string `json:"instance" protobuf:"bytes,1,opt,name=instance"`
	// Key is the backup's key in that destination, as the backups subresource lists it.
	// Empty means the newest backup.
	// +optional
	Key string `json:"key,omitempty" protobuf:"bytes,2,opt,name=key"`
}

// TLSSpec holds the TLS settings of a cluster.
type TLSSpec struct {
	// Enabled turns on client and peer TLS with a certificate authority generated for this
	// instance. Clients then need a certificate signed by that CA.
	// +optional
	Enabled bool `json:"enabled,omitempty" protobuf:"varint,1,opt,name=enabled"`
}

// StorageSpec is the PersistentVolumeClaim template of every member.
type StorageSpec struct {
	// VolumeSize is the capacity requested for each member's volume, such as "1Gi" (the
	// field "size"; the Go name differs because a protobuf message has a Size method).
	// +optional
	VolumeSize *resource.Quantity `json:"size,omitempty" protobuf:"bytes,1,opt,name=size"`
	// StorageClassName is the storage class of each member's volume. Absent means the
	// cluster's default storage class.
	// +optional
	StorageClassName *string `json:"storageClassName,omitempty" protobuf:"bytes,2,opt,name=storageClassName"`
}

// Phase is a coarse summary of where an instance is in its lifecycle.
// +enum
type Phase string

// The phases an instance moves through.
const (
	// PhasePending means the controller has not acted on the instance yet.
	PhasePending Phase = "Pending"
	// PhaseDeploying means the first members are being started.
	PhaseDeploying Phase = "Deploying"
	// PhaseScaling means members are being added or removed.
	PhaseScaling Phase = "Scaling"
	// PhaseRunning means the cluster serves with the members the spec asks for. A member
	// that does not answer while quorum holds (or restarts in a version roll) leaves it
	// Running: Available stays True (reason QuorumReady) and Degraded says why.
	PhaseRunning Phase = "Running"
	// PhaseFailed means the controller could not reach the spec; see the conditions.
	PhaseFailed Phase = "Failed"
	// PhaseDeleting means the members are being stopped and their data removed.
	PhaseDeleting Phase = "Deleting"
	// PhaseRestoring means every member is being restored from a snapshot.
	PhaseRestoring Phase = "Restoring"
	// PhaseRecovering means the cluster is being rebuilt from one surviving member after
	// quorum was lost, as requested through the recover subresource.
	PhaseRecovering Phase = "Recovering"
)

// ETCDInstanceStatus is written only by the controller, through the status subresource;
// changes sent with the main resource are ignored.
type ETCDInstanceStatus struct {
	// ObservedGeneration is the metadata.generation the controller last acted on. When it
	// is lower than metadata.generation, the status does not reflect the latest spec yet.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty" protobuf:"varint,1,opt,name=observedGeneration"`
	// Phase summarises the lifecycle: Pending, Deploying, Scaling, Running, Failed, Deleting,
	// Restoring or Recovering.
	// +optional
	Phase Phase `json:"phase,omitempty" protobuf:"bytes,2,opt,name=phase,casttype=Phase"`
	// Replicas is the number of members that exist, ready or not.
	// +optional
	Replicas int32 `json:"replicas,omitempty" protobuf:"varint,3,opt,name=replicas"`
	// ReadyReplicas is the number of members that answer health checks.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty" protobuf:"varint,4,opt,name=readyReplicas"`
	// Selector is the label selector of the members, in the string form that the scale
	// subresource and the HorizontalPodAutoscaler use.
	// +optional
	Selector string `json:"selector,omitempty" protobuf:"bytes,5,opt,name=selector"`
	// Members lists every member of the cluster with its URLs and role.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +patchMergeKey=name
	// +patchStrategy=merge
	Members []MemberStatus `json:"members,omitempty" patchStrategy:"merge" patchMergeKey:"name" protobuf:"bytes,6,rep,name=members"`
	// Conditions are the latest observations, each at the generation it observed: Available
	// (a majority of the voting members is ready, so the cluster answers its clients; a new
	// instance only once every member it was created with serves), Progressing (a change is under way; False with reason
	// Converged once the spec's members serve, or with the reason of what stops every change
	// until a person acts, such as UpgradeFailed, MemberRepairDisabled or MemberNotJoining,
	// its message saying what to do), Degraded (a member is unhealthy or a change failed) and
	// BackupSucceeded (whether the latest scheduled backup succeeded, and why not).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchMergeKey=type
	// +patchStrategy=merge
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type" protobuf:"bytes,7,rep,name=conditions"`
	// Backup reports the scheduled backups: the last attempt and the last success.
	// +optional
	Backup *BackupStatus `json:"backup,omitempty" protobuf:"bytes,8,opt,name=backup"`
}

// BackupStatus reports the last attempt and the last success of the scheduled backups.
type BackupStatus struct {
	// LastScheduleTime is when the latest scheduled backup was started, successful or not.
	// +optional
	LastScheduleTime *metav1.Time `json:"lastScheduleTime,omitempty" protobuf:"bytes,1,opt,name=lastScheduleTime"`
	// LastSuccessfulTime is when the latest successful backup completed.
	// +optional
	LastSuccessfulTime *metav1.Time `json:"lastSuccessfulTime,omitempty" protobuf:"bytes,2,opt,name=lastSuccessfulTime"`
	// LastBackup describes the latest successful backup.
	// +optional
	LastBackup *BackupInfo `json:"lastBackup,omitempty" protobuf:"bytes,3,opt,name=lastBackup"`
}

// BackupInfo describes one backup in a destination and its provenance.
type BackupInfo struct {
	// Key is the backup's name in its destination: the object key for s3, the file name
	// for local. Keys of one instance sort by time.
	Key string `json:"key" protobuf:"bytes,1,opt,name=key"`
	// Revision is the etcd revision the snapshot was taken at.
	// +optional
	Revision int64 `json:"revision,omitempty" protobuf:"varint,2,opt,name=revision"`
	// SizeBytes is the size of the snapshot in bytes.
	// +optional
	SizeBytes int64 `json:"sizeBytes,omitempty" protobuf:"varint,3,opt,name=sizeBytes"`
	// SHA256 is the hex-encoded SHA-256 of the snapshot; a restore checks it.
	// +optional
	SHA256 string `json:"sha256,omitempty" protobuf:"bytes,4,opt,name=sha256"`
	// EtcdVersion is the etcd storage version recorded in the snapshot, such as "3.7.0": the
	// major and minor of the member that took it, with patch 0. A restore refuses a snapshot
	// whose minor is newer than the etcd the instance runs.
	// +optional
	EtcdVersion string `json:"etcdVersion,omitempty" protobuf:"bytes,5,opt,name=etcdVersion"`
	// CompletionTime is when the backup was complete in its destination.
	// +optional
	CompletionTime metav1.Time `json:"completionTime,omitempty" protobuf:"bytes,6,opt,name=completionTime"`
	// InstanceUID is the metadata.uid of the instance the backup was taken of.
	// +optional
	InstanceUID string `json:"instanceUID,omitempty" protobuf:"bytes,7,opt,name=instanceUID"`
}

// MemberStatus describes one etcd member as the controller last saw it.
type MemberStatus struct {
	// Name is the member's name, "<instance>-<ordinal>".
	Name string `json:"name" protobuf:"bytes,1,opt,name=name"`
	// ID is the member's ID in hexadecimal, as etcdctl member list prints it.
	// +optional
	ID string `json:"id,omitempty" protobuf:"bytes,2,opt,name=id"`
	// PeerURL is the URL other members reach this member on.
	// +optional
	PeerURL string `json:"peerURL,omitempty" protobuf:"bytes,3,opt,name=peerURL"`
	// ClientURL is the URL clients reach this member on.
	// +optional
	ClientURL string `json:"clientURL,omitempty" protobuf:"bytes,4,opt,name=clientURL"`
	// Ready is true when the member answers health checks.
	// +optional
	Ready bool `json:"ready,omitempty" protobuf:"varint,5,opt,name=ready"`
	// Leader is true when the member is the raft leader.
	// +optional
	Leader bool `json:"leader,omitempty" protobuf:"varint,6,opt,name=leader"`
	// Learner is true while the member is a non-voting learner catching up with the leader.
	// +optional
	Learner bool `json:"learner,omitempty" protobuf:"varint,7,opt,name=learner"`
	// Version is the etcd server version the member reports, such as "3.6.5".
	// +optional
	Version string `json:"version,omitempty" protobuf:"bytes,8,opt,name=version"`
	// DBSize is the size in bytes of the member's backend database file, including space
	// freed by compaction that only a defragmentation returns.
	// +optional
	DBSize int64 `json:"dbSize,omitempty" protobuf:"varint,9,opt,name=dbSize"`
	// DBSizeInUse is the number of bytes of the database file that hold data; dbSize minus
	// dbSizeInUse is what a defragmentation would free.
	// +optional
	DBSizeInUse int64 `json:"dbSizeInUse,omitempty" protobuf:"varint,10,opt,name=dbSizeInUse"`
	// Revision is the latest key-value store revision the member has applied.
	// +optional
	Revision int64 `json:"revision,omitempty" protobuf:"varint,11,opt,name=revision"`
	// Alarms are the alarms raised on the member, such as NOSPACE or CORRUPT.
	// +optional
	// +listType=set
	Alarms []string `json:"alarms,omitempty" protobuf:"bytes,12,rep,name=alarms"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ETCDInstanceList is a list of ETCDInstances.
type ETCDInstanceList struct {
	metav1.TypeMeta `json:",inline"`
	// Standard list metadata.
	// +optional
	metav1.ListMeta `json:"metadata,omitempty" protobuf:"bytes,1,opt,name=metadata"`

	// Items are the ETCDInstances.
	Items []ETCDInstance `json:"items" protobuf:"bytes,2,rep,name=items"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ETCDInstanceBackupList is what GET etcdinstances/NAME/backups returns: the backups of the
// instance that its destination holds, newest first, read from the destination itself.
type ETCDInstanceBackupList struct {
	metav1.TypeMeta `json:",inline"`
	// Standard list metadata.
	// +optional
	metav1.ListMeta `json:"metadata,omitempty" protobuf:"bytes,1,opt,name=metadata"`

	// Items are the backups, newest first.
	Items []BackupInfo `json:"items" protobuf:"bytes,2,rep,name=items"`
}
