package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcdaas/etcdaas/test/testenv"
)

// The generated matrix sits between these lines of docs/reliability.md.
const (
	matrixBegin = "<!-- BEGIN authorization matrix: generated from test/e2e/authz_matrix_test.go; ETCDAAS_UPDATE_DOCS=1 go test ./test/e2e/ -run TestAuthorizationMatrixDocumented rewrites it -->\n"
	matrixEnd   = "<!-- END authorization matrix -->\n"
)

// TestAuthorizationMatrixDocumented checks that docs/reliability.md shows the authorization
// matrix the e2e tier checks, cell for cell; with ETCDAAS_UPDATE_DOCS=1 it rewrites the table.
func TestAuthorizationMatrixDocumented(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, "docs", "reliability.md")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	begin, end := strings.Index(doc, matrixBegin), strings.Index(doc, matrixEnd)
	if begin < 0 || end < begin {
		t.Fatalf("%s lacks the lines\n%s%s around the authorization matrix", path, matrixBegin, matrixEnd)
	}
	want := matrixMarkdown()
	got := doc[begin+len(matrixBegin) : end]
	if got == want {
		return
	}
	if os.Getenv("ETCDAAS_UPDATE_DOCS") == "1" {
		updated := doc[:begin+len(matrixBegin)] + want + doc[end:]
		if err := os.WriteFile(path, []byte(updated), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote the authorization matrix in %s", path)
		return
	}
	t.Errorf("the authorization matrix in %s differs from the declaration; rerun with ETCDAAS_UPDATE_DOCS=1 to rewrite it.\nwant:\n%s\ngot:\n%s", path, want, got)
}
