//go:build tools

// Package tools records gotestsum, the test runner of `make test`'s last step, so that
// `go mod tidy` keeps its requirements in go.mod and go.sum.
package tools

import _ "gotest.tools/gotestsum"
