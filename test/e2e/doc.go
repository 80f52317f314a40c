// Package e2e tests etcdaas behind a real kube-apiserver: etcd, kube-apiserver with the
// aggregation layer, kube-controller-manager, etcdaas-apiserver registered by APIService
// under the least-privilege identity of deploy/, and etcdaas-controller, all on loopback
// (see the framework package), exercised with real kubectl binaries.
package e2e
