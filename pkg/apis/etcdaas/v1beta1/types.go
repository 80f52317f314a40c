package v1beta1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// +genclient
// +genclient:method=GetScale,verb=get,subresource=scale,result=k8s.io/api/autoscaling/v1.Scale
// +genclient:method=UpdateScale,verb=update,subresource=scale,input=k8s.io/api/autoscaling/v1.Scale,result=k8s.io/api/autoscaling/v1.Scale
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ETCDInstance is an etcd cluster run for you by etcdaas. Create one and the controller
// starts its members, keeps them healthy, scales them one member at a time and removes them
// when the ETCDInstance is deleted.
type ETCDInstance struct {
	metav1.TypeMeta `json:",inline"`
	// Standard object metadata. The name is a DNS-1035 label of at most 50 characters.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the etcd cluster you ask for.
	// +optional
	Spec ETCDInstanceSpec `json:"spec,omitempty"`
	// Status is the etcd cluster as the controller last observed it. Read-only for users;
	// the controller writes it through the status subresource.
	// +optional
	Status ETCDInstanceStatus `json:"status,omitempty"`
}

// ETCDInstanceSpec holds what you choose for a cluster; the controller changes the running
// members to match it.
type ETCDInstanceSpec struct {
	// Replicas is the number of etcd members, from 1 to 9. Defaults to 3. Odd numbers are
	// recommended: an even number tolerates no more failures than the odd number below it.
	// Changed one member at a time; also set through the scale subresource.
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`
	// Version is the etcd minor version to run, such as "3.7". Defaults to the version the
	// controller runs by default.
	// +optional
	Version string `json:"version,omitempty"`
	// TLS turns on client and peer TLS. Absent means plaintext. Immutable after creation.
	// +optional
	TLS *TLSSpec `json:"tls,omitempty"`
	// Storage configures each member's persistent volume on the kubernetes backend.
	// Immutable after creation.
	// +optional
	Storage *StorageSpec `json:"storage,omitempty"`
}

// TLSSpec holds the TLS settings of a cluster.
type TLSSpec struct {
	// Enabled turns on client and peer TLS with a certificate authority generated for this
	// instance. Clients then need a certificate signed by that CA.
	// +optional
	Enabled bool `json:"enabled,omitempty"`
}

// StorageSpec is the PersistentVolumeClaim template of every member.
type StorageSpec struct {
	// Size is the capacity requested for each member's volume, such as "1Gi".
	// +optional
	Size *resource.Quantity `json:"size,omitempty"`
	// StorageClassName is the storage class of each member's volume. Absent means the
	// cluster's default storage class.
	// +optional
	StorageClassName *string `json:"storageClassName,omitempty"`
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
	// PhaseRunning means every member is healthy and the spec is satisfied.
	PhaseRunning Phase = "Running"
	// PhaseFailed means the controller could not reach the spec; see the conditions.
	PhaseFailed Phase = "Failed"
	// PhaseDeleting means the members are being stopped and their data removed.
	PhaseDeleting Phase = "Deleting"
)

// ETCDInstanceStatus is written only by the controller, through the status subresource;
// changes sent with the main resource are ignored.
type ETCDInstanceStatus struct {
	// ObservedGeneration is the metadata.generation the controller last acted on. When it
	// is lower than metadata.generation, the status does not reflect the latest spec yet.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Phase summarises the lifecycle: Pending, Deploying, Scaling, Running, Failed or Deleting.
	// +optional
	Phase Phase `json:"phase,omitempty"`
	// Replicas is the number of members that exist, ready or not.
	// +optional
	Replicas int32 `json:"replicas,omitempty"`
	// ReadyReplicas is the number of members that answer health checks.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`
	// Selector is the label selector of the members, in the string form that the scale
	// subresource and the HorizontalPodAutoscaler use.
	// +optional
	Selector string `json:"selector,omitempty"`
	// Members lists every member of the cluster with its URLs and role.
	// +optional
	// +listType=map
	// +listMapKey=name
	Members []MemberStatus `json:"members,omitempty"`
	// Conditions are the latest observations: Available (serving with every member healthy),
	// Progressing (a change is under way) and Degraded (a member is unhealthy or a change failed).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// MemberStatus describes one etcd member as the controller last saw it.
type MemberStatus struct {
	// Name is the member's name, "<instance>-<ordinal>".
	Name string `json:"name"`
	// ID is the member's ID in hexadecimal, as etcdctl member list prints it.
	// +optional
	ID string `json:"id,omitempty"`
	// PeerURL is the URL other members reach this member on.
	// +optional
	PeerURL string `json:"peerURL,omitempty"`
	// ClientURL is the URL clients reach this member on.
	// +optional
	ClientURL string `json:"clientURL,omitempty"`
	// Ready is true when the member answers health checks.
	// +optional
	Ready bool `json:"ready,omitempty"`
	// Leader is true when the member is the raft leader.
	// +optional
	Leader bool `json:"leader,omitempty"`
	// Learner is true while the member is a non-voting learner catching up with the leader.
	// +optional
	Learner bool `json:"learner,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ETCDInstanceList is a list of ETCDInstances.
type ETCDInstanceList struct {
	metav1.TypeMeta `json:",inline"`
	// Standard list metadata.
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`

	// Items are the ETCDInstances.
	Items []ETCDInstance `json:"items"`
}
