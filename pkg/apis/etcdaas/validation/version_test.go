package validation

import (
	"strings"
	"testing"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
)

// TestVersionChangeAgainstReportedVersions checks that a spec.version change goes to the same
// or the next minor of the lowest version the members report, never to an older one.
func TestVersionChangeAgainstReportedVersions(t *testing.T) {
	for name, tc := range map[string]struct {
		oldVersion string
		reported   []string
		newVersion string
		// wantDetail is a part of the Forbidden error's detail; empty when accepted.
		wantDetail string
	}{
		"patch upgrade":                            {"3.7.2", []string{"3.7.2", "3.7.2", "3.7.2"}, "3.7.3", ""},
		"release to its minor":                     {"3.7.2", []string{"3.7.2"}, "3.7", ""},
		"next minor":                               {"3.6", []string{"3.6.5", "3.6.5", "3.6.5"}, "3.7", ""},
		"next minor release":                       {"3.6", []string{"3.6.5"}, "3.7.3", ""},
		"skip a minor":                             {"3.5", []string{"3.5.21", "3.5.21", "3.5.21"}, "3.7", "skips a minor version (member db-0 reports etcd 3.5.21"},
		"minor downgrade":                          {"3.7", []string{"3.7.3", "3.7.3", "3.7.3"}, "3.6", "downgrades are not supported"},
		"patch downgrade":                          {"3.7.3", []string{"3.7.3", "3.7.3", "3.7.3"}, "3.7.2", "older than what the members run"},
		"lowest reported decides":                  {"3.7", []string{"3.7.3", "3.6.5", "3.7.3"}, "3.8", "member db-1 reports etcd 3.6.5, the lowest"},
		"back to the lowest after a failed roll":   {"3.7.3", []string{"3.7.3", "3.7.2", "3.7.2"}, "3.7.2", ""},
		"spec decides before members report":       {"3.5", nil, "3.7", "no member reports its version yet and spec.version was \"3.5\""},
		"spec decides, next minor":                 {"3.6", nil, "3.7", ""},
		"unparsable reports are ignored":           {"3.6", []string{"", "garbage"}, "3.7", ""},
		"minor back while a member runs the newer": {"3.6", []string{"3.6.5", "3.5.21"}, "3.5", "member db-0 already runs etcd 3.6.5"},
		"pre-release report":                       {"3.7", []string{"3.7.0-alpha.0"}, "3.8", ""},
		"unchanged even when members run older":    {"3.7", []string{"3.5.21"}, "3.7", ""},
	} {
		t.Run(name, func(t *testing.T) {
			oldObj := validInstance()
			oldObj.Spec.Version = tc.oldVersion
			for i, v := range tc.reported {
				oldObj.Status.Members = append(oldObj.Status.Members, etcdaas.MemberStatus{Name: "db-" + string(rune('0'+i)), Version: v})
			}
			newObj := oldObj.DeepCopy()
			newObj.Spec.Version = tc.newVersion
			errs := ValidateETCDInstanceUpdate(newObj, oldObj)
			if tc.wantDetail == "" {
				expect(t, errs)
				return
			}
			expect(t, errs, "FieldValueForbidden spec.version")
			if !strings.Contains(errs[0].Detail, tc.wantDetail) {
				t.Fatalf("detail %q does not say %q", errs[0].Detail, tc.wantDetail)
			}
		})
	}
}

func TestParseEtcdVersion(t *testing.T) {
	for in, want := range map[string]string{"3.7": "3.7", "3.7.3": "3.7.3", "v3.6.5": "3.6.5", "3.8.0-alpha.0": "3.8.0", "3.7.1+git": "3.7.1"} {
		got, ok := parseEtcdVersion(in)
		if !ok || got.String() != want {
			t.Errorf("parseEtcdVersion(%q) = %v, %v; want %s", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "3", "3.x", "3.7.3.1", "a.b.c", "3.-1"} {
		if got, ok := parseEtcdVersion(in); ok {
			t.Errorf("parseEtcdVersion(%q) = %v, want not ok", in, got)
		}
	}
}
