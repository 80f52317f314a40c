// +k8s:deepcopy-gen=package
// +groupName=etcdaas.dev

// Package etcdaas holds the internal (hub) version of the etcdaas.dev API. Every served
// version converts to and from these types; nothing here is ever sent over the wire.
package etcdaas
