//go:build tools

// Package hack pins the code generators hack/update-codegen.sh runs, so that go.mod records
// their version: the k8s.io/code-generator generators, go-to-protobuf's protoc plugin and
// goimports, which go-to-protobuf runs on what it writes.
package hack

import (
	_ "golang.org/x/tools/cmd/goimports"
	_ "k8s.io/code-generator"
	_ "k8s.io/code-generator/cmd/go-to-protobuf/protoc-gen-gogo"
)
