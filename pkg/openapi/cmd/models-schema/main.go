// Command models-schema prints the generated OpenAPI definitions as one OpenAPI v2 document.
// hack/update-codegen.sh feeds it to applyconfiguration-gen, which needs the schemas to
// generate apply configurations that know list types and map keys.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"k8s.io/kube-openapi/pkg/common"
	"k8s.io/kube-openapi/pkg/validation/spec"

	"github.com/etcdaas/etcdaas/pkg/openapi"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "models-schema: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	ref := func(name string) spec.Ref { return spec.MustCreateRef("#/definitions/" + name) }
	definitions := openapi.GetOpenAPIDefinitions(ref)
	schemas := make(map[string]spec.Schema, len(definitions))
	for name, definition := range definitions {
		// A definition may embed a separate v2 form; applyconfiguration-gen reads v2.
		if embedded, ok := definition.Schema.Extensions[common.ExtensionV2Schema]; ok {
			if v2, ok := embedded.(spec.Schema); ok {
				schemas[name] = v2
				continue
			}
		}
		schemas[name] = definition.Schema
	}
	document := spec.Swagger{SwaggerProps: spec.SwaggerProps{
		Swagger:     "2.0",
		Info:        &spec.Info{InfoProps: spec.InfoProps{Title: "etcdaas", Version: "unversioned"}},
		Definitions: schemas,
	}}
	return json.NewEncoder(os.Stdout).Encode(&document)
}
