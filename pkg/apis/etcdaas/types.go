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

	Spec   ETCDInstanceSpec
	Status ETCDInstanceStatus
}

// ETCDInstanceSpec is the desired state of an etcd cluster.
type ETCDInstanceSpec struct {
	// Replicas is the number of etcd members.
	Replicas int32
	// Version is the etcd minor version, such as "3.7".
	Version string
	// TLS configures client and peer TLS; nil means plaintext.
	TLS *TLSSpec
	// Storage configures the members' volumes (kubernetes backend); nil means the backend default.
	Storage *StorageSpec
}

// TLSSpec configures TLS for an etcd cluster.
type TLSSpec struct {
	// Enabled turns on client and peer TLS with a CA generated for the instance.
	Enabled bool
}

// StorageSpec configures the persistent volume of every member.
type StorageSpec struct {
	// Size is the requested capacity of each member's volume.
	Size *resource.Quantity
	// StorageClassName is the storage class of each member's volume.
	StorageClassName *string
}

// Phase is a coarse summary of where an instance is in its lifecycle.
type Phase string

// The phases an instance moves through.
const (
	PhasePending   Phase = "Pending"
	PhaseDeploying Phase = "Deploying"
	PhaseScaling   Phase = "Scaling"
	PhaseRunning   Phase = "Running"
	PhaseFailed    Phase = "Failed"
	PhaseDeleting  Phase = "Deleting"
)

// Condition types reported in status.conditions.
const (
	// ConditionAvailable is True when every member is healthy and the cluster has quorum.
	ConditionAvailable = "Available"
	// ConditionProgressing is True while the controller is changing the cluster.
	ConditionProgressing = "Progressing"
	// ConditionDegraded is True when some member is unhealthy or a change failed.
	ConditionDegraded = "Degraded"
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
	// Conditions are the Available, Progressing and Degraded conditions.
	Conditions []metav1.Condition
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
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ETCDInstanceList is a list of ETCDInstances.
type ETCDInstanceList struct {
	metav1.TypeMeta
	metav1.ListMeta

	Items []ETCDInstance
}
