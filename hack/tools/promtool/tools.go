//go:build tools

// Package tools records the main package built by ../build.sh so that
// `go mod tidy` keeps its requirements in go.mod and go.sum.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
