package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// +genclient
// +genclient:method=GetScale,verb=get,subresource=scale,result=k8s.io/api/autoscaling/v1.Scale
// +genclient:method=UpdateScale,verb=update,subresource=scale,input=k8s.io/api/autoscaling/v1.Scale,result=k8s.io/api/autoscaling/v1.Scale
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ETCDInstance is an etcd cluster run for you by etcdaas, in the original v1alpha1 format.
// Prefer etcdaas.dev/v1beta1: it can express the etcd version, storage, members and
// conditions. Fields v1alpha1 cannot express are kept in the annotation
// etcdaas.dev/v1beta1-fields; leave it as you read it.
type ETCDInstance struct {
	metav1.TypeMeta `json:",inline"`
	// Standard object metadata. The name is a DNS-1035 label of at most 50 characters.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty" protobuf:"bytes,1,opt,name=metadata"`

	// Spec is the etcd cluster you ask for.
	// +optional
	Spec ETCDInstanceSpec `json:"spec,omitempty" protobuf:"bytes,2,opt,name=spec"`
	// Status is the etcd cluster as the controller last observed it.
	// +optional
	Status ETCDInstanceStatus `json:"status,omitempty" protobuf:"bytes,3,opt,name=status"`
}

// ETCDInstanceSpec holds what you choose for a cluster; the controller changes the running
// members to match it.
type ETCDInstanceSpec struct {
	// Replicas is the number of etcd members, from 1 to 9. Defaults to 1.
	// +optional
	Replicas *int32 `json:"replicas" protobuf:"varint,1,opt,name=replicas"`
	// WithTLSBundle turns on client and peer TLS with a certificate authority generated for
	// this instance. Immutable after creation.
	// +optional
	WithTLSBundle bool `json:"with_tls_bundle" protobuf:"varint,2,opt,name=with_tls_bundle,json=withTlsBundle"`
}

// State is the lifecycle state in the original format.
// +enum
type State string

// The states of the original format.
const (
	// StateNone means the controller has not acted on the instance yet.
	StateNone State = ""
	// StateDeploying means members are being started, added or removed.
	StateDeploying State = "deploying"
	// StateRunning means the cluster serves with the members the spec asks for; message
	// says how many are ready (one that does not answer while quorum holds leaves it running).
	StateRunning State = "running"
	// StateFailed means the controller could not reach the spec; see message.
	StateFailed State = "failed"
)

// ETCDInstanceStatus is written only by the controller, through the status subresource;
// changes sent with the main resource are ignored.
type ETCDInstanceStatus struct {
	// State is "" (not acted on yet, or being deleted), deploying (members are being started,
	// added, removed or restored), running or failed.
	// +optional
	State State `json:"state,omitempty" protobuf:"bytes,1,opt,name=state,casttype=State"`
	// Message is a human-readable explanation of the state.
	// +optional
	Message string `json:"message,omitempty" protobuf:"bytes,2,opt,name=message"`
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
