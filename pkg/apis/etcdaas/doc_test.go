package etcdaas_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"strings"
	"testing"
)

// TestAPITypesAreDocumented fails on an exported type or field of the API packages (the hub
// and both served versions) without a doc comment: go doc and the Go clients' users read
// them, and the served versions' become kubectl explain's descriptions.
func TestAPITypesAreDocumented(t *testing.T) {
	handWritten := func(info fs.FileInfo) bool {
		name := info.Name()
		return !strings.HasSuffix(name, "_test.go") && !strings.HasPrefix(name, "zz_generated") && name != "generated.pb.go"
	}
	for _, dir := range []string{".", "v1beta1", "v1alpha1"} {
		fset := token.NewFileSet()
		pkgs, err := parser.ParseDir(fset, dir, handWritten, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		for _, pkg := range pkgs {
			for _, file := range pkg.Files {
				for _, missing := range undocumented(file) {
					t.Errorf("%s: %s has no doc comment", fset.Position(missing.Pos()), missing.Name)
				}
			}
		}
	}
}

// undocumented returns the exported types of file without a doc comment, and the named
// exported fields of its exported struct types without one.
func undocumented(file *ast.File) []*ast.Ident {
	var missing []*ast.Ident
	for _, decl := range file.Decls {
		gen, ok := decl.(*ast.GenDecl)
		if !ok || gen.Tok != token.TYPE {
			continue
		}
		for _, spec := range gen.Specs {
			typ := spec.(*ast.TypeSpec)
			if !typ.Name.IsExported() {
				continue
			}
			if typ.Doc == nil && gen.Doc == nil {
				missing = append(missing, typ.Name)
			}
			fields, ok := typ.Type.(*ast.StructType)
			if !ok {
				continue
			}
			for _, field := range fields.Fields.List {
				for _, name := range field.Names {
					if name.IsExported() && field.Doc == nil {
						missing = append(missing, name)
					}
				}
			}
		}
	}
	return missing
}
