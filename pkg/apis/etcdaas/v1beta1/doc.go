// +k8s:openapi-gen=true
// +k8s:deepcopy-gen=package
// +k8s:conversion-gen=github.com/etcdaas/etcdaas/pkg/apis/etcdaas
// +k8s:defaulter-gen=TypeMeta
// +k8s:openapi-model-package=dev.etcdaas.v1beta1
// +groupName=etcdaas.dev

// Package v1beta1 is the current version of the etcdaas.dev API and its storage version.
package v1beta1
