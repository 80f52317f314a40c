// +k8s:openapi-gen=true
// +k8s:deepcopy-gen=package
// +k8s:conversion-gen=github.com/etcdaas/etcdaas/pkg/apis/etcdaas
// +k8s:defaulter-gen=TypeMeta
// +k8s:openapi-model-package=dev.etcdaas.v1alpha1
// +groupName=etcdaas.dev

// Package v1alpha1 is the original wire format of the etcdaas.dev API, frozen and served for
// clients written against it. Fields that only v1beta1 can express travel in one annotation,
// so that an old client's read-modify-write loses nothing.
package v1alpha1
