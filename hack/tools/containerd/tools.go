//go:build tools

// Package tools records the containerd v2 commands build.sh builds (the CRI
// runtime of the cluster test tier), so that `go mod tidy` keeps their
// requirements in go.mod and go.sum.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
