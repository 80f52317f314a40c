//go:build tools

// Package tools records CoreDNS (the cluster DNS of the cluster test tier) so
// that `go mod tidy` keeps its requirements in go.mod and go.sum.
package tools

import _ "github.com/coredns/coredns"
