package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A name or namespace that is not a path segment is refused before anything is sent, as
// client-go refuses it for every other command: "../x" would otherwise post the snapshot to
// another path.
func TestRestoreRefusesNamesThatAreNotPathSegments(t *testing.T) {
	s := newFakeServer(t)
	snap := filepath.Join(t.TempDir(), "snap.db")
	if err := os.WriteFile(snap, []byte("not sent"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ args, want []string }{
		{[]string{"restore", "../x", "-f", snap}, []string{`invalid resource name "../x"`}},
		{[]string{"restore", "x", "-f", snap, "-n", ".."}, []string{`invalid namespace ".."`}},
		{[]string{"restore", "a%2Fb", "-f", snap}, []string{`invalid resource name "a%2Fb"`}},
	} {
		r := s.run(t, tc.args...)
		if r.code != 1 {
			t.Errorf("%q: exit %d, want 1; stderr %q", tc.args, r.code, r.stderr)
		}
		for _, w := range tc.want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("%q: stderr %q lacks %q", tc.args, r.stderr, w)
			}
		}
	}
	if reqs := s.recorded(); len(reqs) != 0 {
		t.Errorf("requests sent: %+v", reqs)
	}
}
