package etcdaas

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ETCDInstance is an etcd cluster run for a user. This internal type is the union of every
// served version.
type ETCDInstance struct {
	metav1.TypeMeta
	metav1.ObjectMeta

	// Spec is the etcd cluster asked for.
	Spec ETCDInstanceSpec
	// Status is the etcd cluster as the controller last observed it.
	Status ETCDInstanceStatus
}

// ETCDInstanceSpec is the desired state of an etcd cluster.
type ETCDInstanceSpec struct {
	// Replicas is the number of etcd members.
	Replicas int32
	// Version is the etcd version: a minor version such as "3.7" or a release such as "3.7.3".
	Version string
	// TLS configures client and peer TLS; nil means plaintext.
	TLS *TLSSpec
	// Storage configures the members' volumes (kubernetes backend); nil means the backend default.
	Storage *StorageSpec
	// Backup schedules backups to a destination; nil means no scheduled backups.
	Backup *BackupSpec
	// RestoreFrom names the backup a new cluster starts from; set at creation only.
	RestoreFrom *RestoreSource
	// Defragmentation overrides when members are defragmented automatically; nil means the
	// controller's defaults.
	Defragmentation *DefragmentationSpec
	// Resources are the compute resources of each member's etcd container (kubernetes
	// backend); nil means the backend's defaults. The local backend cannot apply them.
	Resources *MemberResources
}

// MemberResources are the compute resources of each member's etcd container: the shape of
// corev1.ResourceRequirements without claims. Keys are resource names (cpu, memory,
// ephemeral-storage).
type MemberResources struct {
	// Requests are the resources the scheduler reserves for each member.
	Requests map[string]resource.Quantity
	// Limits are the most each member may use.
	Limits map[string]resource.Quantity
}

// DefragmentationSpec says when a member is defragmented automatically: once the free space
// in its database file reaches both thresholds. A nil threshold is the controller's default.
type DefragmentationSpec struct {
	// FreePercent is the share of the database file, in percent (1..100), that must be free.
	FreePercent *int32
	// FreeBytes is how many bytes of the database file must be free (zero or more).
	FreeBytes *resource.Quantity
}

// TLSSpec configures TLS for an etcd cluster.
type TLSSpec struct {
	// Enabled turns on client and peer TLS with a CA generated for the instance.
	Enabled bool
}

// StorageSpec configures the persistent volume of every member.
type StorageSpec struct {
	// VolumeSize is the requested capacity of each member's volume.
	VolumeSize *resource.Quantity
	// StorageClassName is the storage class of each member's volume.
	StorageClassName *string
}

// BackupSpec schedules backups of an instance and says where they go and how many are kept.
type BackupSpec struct {
	// Schedule is a cron expression of five fields (or a descriptor such as "@daily"), in UTC.
	Schedule string
	// Keep is how many of the newest backups the destination keeps.
	Keep int32
	// Destination is where backups are written.
	Destination BackupDestination
}

// BackupDestination is exactly one place backups are written to.
type BackupDestination struct {
	// S3 is a bucket of an S3-compatible object store.
	S3 *S3Destination
	// Local is a directory of the server, <backup dir>/<namespace>/<name>/.
	Local *LocalDestination
}

// S3Destination is a bucket of an S3-compatible object store.
type S3Destination struct {
	// Endpoint is the store's URL, such as "https://s3.example.com".
	Endpoint string
	// Bucket is the bucket backups are written to; it must exist.
	Bucket string
	// Prefix is prepended to every key; empty means "<namespace>/<name>/".
	Prefix string
	// Region is the bucket's region; empty lets the client use its default.
	Region string
	// CredentialsSecretRef names a Secret in the instance's namespace holding accessKeyID and
	// secretAccessKey; nil means the server's own credentials (standalone mode).
	CredentialsSecretRef *SecretReference
	// CABundle is PEM certificates that verify the endpoint's serving certificate; empty
	// means the system's roots.
	CABundle string
}

// LocalDestination is the server's backup directory; it has no settings, so that a user never
// chooses a path on the server.
type LocalDestination struct{}

// SecretReference names a Secret in the same namespace.
type SecretReference struct {
	// Name is the Secret's name.
	Name string
}

// RestoreSource names a backup of another instance of the same namespace.
type RestoreSource struct {
	// Instance is the name of the instance whose backup destination holds the backup.
	Instance string
	// Key is the backup's key in that destination; empty means the newest.
	Key string
}

// Phase is a coarse summary of where an instance is in its lifecycle.
type Phase string

// The phases an instance moves through.
const (
	PhasePending    Phase = "Pending"
	PhaseDeploying  Phase = "Deploying"
	PhaseScaling    Phase = "Scaling"
	PhaseRunning    Phase = "Running"
	PhaseFailed     Phase = "Failed"
	PhaseDeleting   Phase = "Deleting"
	PhaseRestoring  Phase = "Restoring"
	PhaseRecovering Phase = "Recovering"
)

// Condition types reported in status.conditions.
const (
	// ConditionAvailable is True while a majority of the voting members is ready, so that the
	// cluster answers its clients (reason QuorumReady when not every voting member is); a new
	// instance (Deploying) becomes available once every member it was created with is ready.
	ConditionAvailable = "Available"
	// ConditionProgressing is True while the controller is changing the cluster.
	ConditionProgressing = "Progressing"
	// ConditionDegraded is True when some member is unhealthy or a change failed.
	ConditionDegraded = "Degraded"
	// ConditionBackupSucceeded is True when the latest scheduled backup succeeded.
	ConditionBackupSucceeded = "BackupSucceeded"
)

// ETCDInstanceStatus is the observed state of an etcd cluster.
type ETCDInstanceStatus struct {
	// ObservedGeneration is the metadata.generation the controller last acted on.
	ObservedGeneration int64
	// Phase summarises the lifecycle of the instance.
	Phase Phase
	// Replicas is the number of members that exist.
	Replicas int32
	// ReadyReplicas is the number of members that are healthy.
	ReadyReplicas int32
	// Selector is the label selector of the members, in string form.
	Selector string
	// Members lists the members of the cluster.
	Members []MemberStatus
	// Conditions are the Available, Progressing, Degraded and BackupSucceeded conditions.
	Conditions []metav1.Condition
	// Backup reports the scheduled backups; nil when none ever ran.
	Backup *BackupStatus
}

// BackupStatus reports the last attempt and the last success of the scheduled backups.
type BackupStatus struct {
	// LastScheduleTime is when the latest scheduled backup was started.
	LastScheduleTime *metav1.Time
	// LastSuccessfulTime is when the latest successful backup completed.
	LastSuccessfulTime *metav1.Time
	// LastBackup describes the latest successful backup.
	LastBackup *BackupInfo
}

// BackupInfo describes one backup in a destination: where it is and what it holds.
type BackupInfo struct {
	// Key is the backup's name in its destination.
	Key string
	// Revision is the etcd revision the snapshot was taken at.
	Revision int64
	// SizeBytes is the size of the snapshot.
	SizeBytes int64
	// SHA256 is the hex SHA-256 of the snapshot.
	SHA256 string
	// EtcdVersion is the etcd storage version recorded in the snapshot, such as "3.7.0".
	EtcdVersion string
	// CompletionTime is when the backup was complete in the destination.
	CompletionTime metav1.Time
	// InstanceUID is the UID of the instance the backup was taken of.
	InstanceUID string
}

// MemberStatus is the observed state of one etcd member.
type MemberStatus struct {
	// Name is the member's name.
	Name string
	// ID is the member's ID in hexadecimal, as etcdctl prints it.
	ID string
	// PeerURL is the URL other members reach this member on.
	PeerURL string
	// ClientURL is the URL clients reach this member on.
	ClientURL string
	// Ready is true when the member answers health checks.
	Ready bool
	// Leader is true when the member is the raft leader.
	Leader bool
	// Learner is true while the member is a non-voting learner.
	Learner bool
	// Version is the etcd server version the member reports.
	Version string
	// DBSize is the size in bytes of the member's database file.
	DBSize int64
	// DBSizeInUse is the number of bytes of the database file that hold data.
	DBSizeInUse int64
	// Revision is the latest revision the member has applied.
	Revision int64
	// Alarms are the alarms raised on the member (NOSPACE, CORRUPT).
	Alarms []string
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ETCDInstanceList is a list of ETCDInstances.
type ETCDInstanceList struct {
	metav1.TypeMeta
	metav1.ListMeta

	// Items are the ETCDInstances.
	Items []ETCDInstance
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ETCDInstanceBackupList lists the backups of an instance that its destination holds, newest
// first: what the backups subresource returns.
type ETCDInstanceBackupList struct {
	metav1.TypeMeta
	metav1.ListMeta

	// Items are the backups, newest first.
	Items []BackupInfo
}
