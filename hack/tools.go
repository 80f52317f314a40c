//go:build tools

// Package hack pins the code generators hack/update-codegen.sh runs, so that go.mod records
// their version.
package hack

import (
	_ "k8s.io/code-generator"
)
