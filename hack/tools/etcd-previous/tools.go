//go:build tools

// Package tools records the etcd server of the previous patch release, which the cluster
// test tier builds into a second etcd image (hack/images project --only etcd-previous) to
// roll an instance from it to the release hack/tools pins, so that `go mod tidy` keeps its
// requirements in go.mod and go.sum.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
)
