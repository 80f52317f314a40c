package etcdinstance

import (
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
)

func restrictedStrategy() Strategy {
	s := NewStrategy(testScheme())
	s.Versions = VersionPolicy{Supported: []string{"3.7"}, Reason: "standalone, local backend"}
	return s
}

func TestVersionPolicyOnCreate(t *testing.T) {
	s := restrictedStrategy()
	for _, apiVersion := range []string{"v1beta1", "v1alpha1"} {
		other := instance()
		other.Spec.Version = "3.6"
		errs := s.Validate(ctxFor(apiVersion), other)
		if len(errs) != 1 || errs[0].Type != field.ErrorTypeNotSupported || errs[0].Field != "spec.version" {
			t.Fatalf("%s, version 3.6: %v; want one NotSupported on spec.version", apiVersion, errs)
		}
		want := `spec.version: Unsupported value: "3.6": this server runs etcd 3.7 members only (standalone, local backend)`
		if got := errs[0].Error(); got != want {
			t.Errorf("%s message:\n got %s\nwant %s", apiVersion, got, want)
		}
		if errs := s.Validate(ctxFor(apiVersion), instance()); len(errs) != 0 {
			t.Errorf("%s, version 3.7: %v", apiVersion, errs)
		}
	}

	malformed := instance()
	malformed.Spec.Version = "banana"
	if errs := s.Validate(ctxFor("v1beta1"), malformed); len(errs) != 1 || errs[0].Type != field.ErrorTypeInvalid {
		t.Errorf("malformed version: %v; want only the format error", errs)
	}

	unrestricted := NewStrategy(testScheme())
	other := instance()
	other.Spec.Version = "3.6"
	if errs := unrestricted.Validate(ctxFor("v1beta1"), other); len(errs) != 0 {
		t.Errorf("no policy (aggregated mode), version 3.6: %v", errs)
	}
}

func TestVersionPolicyOnUpdate(t *testing.T) {
	s := restrictedStrategy()
	old := instance()
	changed := old.DeepCopy()
	changed.Spec.Version = "3.8"
	errs := s.ValidateUpdate(ctxFor("v1beta1"), changed, old)
	if len(errs) != 1 || errs[0].Type != field.ErrorTypeNotSupported || errs[0].BadValue != "3.8" {
		t.Errorf("update 3.7 -> 3.8: %v", errs)
	}

	// An instance stored with another version (before the policy) stays editable.
	stored := instance()
	stored.Spec.Version = "3.6"
	scaled := stored.DeepCopy()
	scaled.Spec.Replicas = 5
	if errs := s.ValidateUpdate(ctxFor("v1beta1"), scaled, stored); len(errs) != 0 {
		t.Errorf("update keeping version 3.6: %v", errs)
	}
	back := stored.DeepCopy()
	back.Spec.Version = "3.7"
	if errs := s.ValidateUpdate(ctxFor("v1beta1"), back, stored); len(errs) != 0 {
		t.Errorf("update 3.6 -> 3.7: %v", errs)
	}
}

func TestVersionPolicyListsEverySupportedVersion(t *testing.T) {
	p := VersionPolicy{Supported: []string{"3.6", "3.7"}}
	if err := p.check("3.6", field.NewPath("spec", "version")); err != nil {
		t.Errorf("3.6 supported: %v", err)
	}
	err := p.check("3.5", field.NewPath("spec", "version"))
	if err == nil || err.Detail != "this server runs etcd 3.6, 3.7 members only" {
		t.Errorf("3.5: %v", err)
	}
}

// TestVersionChangeFollowsTheMembers: without a version policy (aggregated mode, kubernetes
// backend) a spec.version change is checked against the lowest version the members report:
// a downgrade or a skipped minor is a Forbidden error on spec.version, the next minor is not.
func TestVersionChangeFollowsTheMembers(t *testing.T) {
	s := NewStrategy(testScheme())
	old := instance()
	old.Spec.Version = "3.6"
	old.Status.Members = []etcdaas.MemberStatus{{Name: "db-0", Version: "3.6.5"}, {Name: "db-1", Version: "3.5.21"}}
	for version, wantErr := range map[string]bool{"3.5": true, "3.6": false, "3.6.6": false, "3.7": true, "3.5.21": true} {
		changed := old.DeepCopy()
		changed.Spec.Version = version
		errs := s.ValidateUpdate(ctxFor("v1beta1"), changed, old)
		if !wantErr {
			if len(errs) != 0 {
				t.Errorf("3.6 (members 3.6.5, 3.5.21) -> %s: %v", version, errs)
			}
			continue
		}
		if len(errs) != 1 || errs[0].Type != field.ErrorTypeForbidden || errs[0].Field != "spec.version" {
			t.Errorf("3.6 (members 3.6.5, 3.5.21) -> %s: %v; want one Forbidden on spec.version", version, errs)
		}
	}
}
