package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime"
)

// DefaultReplicas is the number of members a v1alpha1 ETCDInstance gets when spec.replicas is
// not set, as in the original API.
const DefaultReplicas int32 = 1

func addDefaultingFuncs(scheme *runtime.Scheme) error {
	return RegisterDefaults(scheme)
}

// SetDefaults_ETCDInstanceSpec fills the unset fields of a v1alpha1 spec.
func SetDefaults_ETCDInstanceSpec(obj *ETCDInstanceSpec) {
	if obj.Replicas == nil {
		replicas := DefaultReplicas
		obj.Replicas = &replicas
	}
}
