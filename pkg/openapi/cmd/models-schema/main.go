// Command models-schema prints the generated OpenAPI definitions as one OpenAPI v2 document.
// hack/update-codegen.sh feeds it to applyconfiguration-gen, which needs the schemas to
// generate apply configurations that know list types and map keys.
//
// The definitions are named by the types' OpenAPI model names (dev.etcdaas.v1beta1.ETCDInstance,
// from +k8s:openapi-model-package), the names a scheme's type converter looks up (the fake
// clientset's Apply, applyconfiguration.NewTypeConverter). applyconfiguration-gen instead looks
// up each type it generates an Extract function for by its Go import path
// (com.github.etcdaas.etcdaas.pkg.apis.etcdaas.v1beta1.ETCDInstance), and keeps only the
// definitions reachable from those: without the path names it compiles no schema at all (every
// field untyped, lists atomic), and without the model names the scheme's lookups fail. So every
// type of the served versions is given under its path name too (see aliasGoPaths).
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"slices"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/kube-openapi/pkg/common"
	"k8s.io/kube-openapi/pkg/util"
	"k8s.io/kube-openapi/pkg/validation/spec"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1alpha1"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/openapi"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "models-schema: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	document, err := modelsDocument()
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(document)
}

// modelsDocument returns the OpenAPI v2 document applyconfiguration-gen reads.
func modelsDocument() (*spec.Swagger, error) {
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
	if err := aliasGoPaths(schemas); err != nil {
		return nil, err
	}
	return &spec.Swagger{SwaggerProps: spec.SwaggerProps{
		Swagger:     "2.0",
		Info:        &spec.Info{InfoProps: spec.InfoProps{Title: "etcdaas", Version: "unversioned"}},
		Definitions: schemas,
	}}, nil
}

func ref(name string) spec.Ref { return spec.MustCreateRef("#/definitions/" + name) }

// modelNamer is a type whose OpenAPI model name openapi-gen set (zz_generated.model_name.go).
type modelNamer interface{ OpenAPIModelName() string }

// aliasGoPaths adds, for every type of the served versions whose model name is not its Go path
// name, a definition under the path name: the model's schema (the same properties, so the same
// compiled type) that is also allOf the model. The compiled schema ignores allOf, but
// applyconfiguration-gen follows it when it keeps what its roots reach, so the model-named
// definitions stay in the document it compiles, for the scheme's lookups.
func aliasGoPaths(schemas map[string]spec.Schema) error {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{v1beta1.AddToScheme, v1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			return err
		}
	}
	for _, typ := range scheme.AllKnownTypes() {
		namer, ok := reflect.New(typ).Interface().(modelNamer)
		if !ok {
			continue
		}
		model, path := namer.OpenAPIModelName(), util.ToRESTFriendlyName(typ.PkgPath()+"."+typ.Name())
		if model == path {
			continue
		}
		schema, ok := schemas[model]
		if !ok {
			return fmt.Errorf("%s: no definition named %s", path, model)
		}
		alias := schema
		alias.AllOf = append(slices.Clone(schema.AllOf), spec.Schema{SchemaProps: spec.SchemaProps{Ref: ref(model)}})
		schemas[path] = alias
	}
	return nil
}
