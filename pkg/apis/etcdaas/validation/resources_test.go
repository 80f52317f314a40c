package validation

import (
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
)

func quantities(kv ...string) map[string]resource.Quantity {
	out := map[string]resource.Quantity{}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i]] = resource.MustParse(kv[i+1])
	}
	return out
}

// TestValidateResources: spec.resources takes only a member's resources, non-negative, with
// no request above its limit, each error naming the key it is about (a 422 with that path).
func TestValidateResources(t *testing.T) {
	for name, tc := range map[string]struct {
		resources *etcdaas.MemberResources
		want      []string
		message   string
	}{
		"absent": {nil, nil, ""},
		"empty":  {&etcdaas.MemberResources{}, nil, ""},
		"requests and limits": {&etcdaas.MemberResources{
			Requests: quantities("cpu", "500m", "memory", "1Gi", "ephemeral-storage", "100Mi"),
			Limits:   quantities("cpu", "1", "memory", "1Gi", "ephemeral-storage", "1Gi"),
		}, nil, ""},
		"limits only":  {&etcdaas.MemberResources{Limits: quantities("memory", "2Gi")}, nil, ""},
		"zero request": {&etcdaas.MemberResources{Requests: quantities("cpu", "0")}, nil, ""},
		"request equal to a limit written otherwise": {&etcdaas.MemberResources{Requests: quantities("cpu", "1000m"), Limits: quantities("cpu", "1")}, nil, ""},
		"gpu request": {&etcdaas.MemberResources{Requests: quantities("nvidia.com/gpu", "1")},
			[]string{"FieldValueNotSupported spec.resources.requests[nvidia.com/gpu]"}, `supported values: "cpu", "ephemeral-storage", "memory"`},
		"hugepages and storage limits": {&etcdaas.MemberResources{Limits: quantities("hugepages-2Mi", "2Mi", "storage", "1Gi")},
			[]string{"FieldValueNotSupported spec.resources.limits[hugepages-2Mi]", "FieldValueNotSupported spec.resources.limits[storage]"}, ""},
		"negative request": {&etcdaas.MemberResources{Requests: quantities("memory", "-1Mi")},
			[]string{"FieldValueInvalid spec.resources.requests[memory]"}, "must be greater than or equal to 0"},
		"negative limit": {&etcdaas.MemberResources{Limits: quantities("cpu", "-100m")},
			[]string{"FieldValueInvalid spec.resources.limits[cpu]"}, "must be greater than or equal to 0"},
		"request above its limit": {&etcdaas.MemberResources{Requests: quantities("cpu", "2", "memory", "1Gi"), Limits: quantities("cpu", "1", "memory", "2Gi")},
			[]string{"FieldValueInvalid spec.resources.requests[cpu]"}, "must be less than or equal to cpu limit of 1"},
	} {
		t.Run(name, func(t *testing.T) {
			obj := validInstance()
			obj.Spec.Resources = tc.resources
			errs := ValidateETCDInstance(obj)
			expect(t, errs, tc.want...)
			if tc.message != "" && !strings.Contains(errs.ToAggregate().Error(), tc.message) {
				t.Fatalf("errors %q do not say %q", errs.ToAggregate(), tc.message)
			}
		})
	}
}

// TestResourcesAreMutable: a change of spec.resources is an update like any other.
func TestResourcesAreMutable(t *testing.T) {
	oldObj := validInstance()
	newObj := oldObj.DeepCopy()
	newObj.Spec.Resources = &etcdaas.MemberResources{Requests: quantities("memory", "1Gi")}
	expect(t, ValidateETCDInstanceUpdate(newObj, oldObj))
	third := newObj.DeepCopy()
	third.Spec.Resources.Requests = quantities("memory", "2Gi")
	expect(t, ValidateETCDInstanceUpdate(third, newObj))
	expect(t, ValidateETCDInstanceUpdate(oldObj, third))
}

// TestResourcesWarnings: a fraction of a byte of memory or ephemeral-storage is warned about,
// as kube-apiserver warns about a container's; whole bytes and fractions of a cpu are not.
func TestResourcesWarnings(t *testing.T) {
	path := field.NewPath("spec", "resources")
	for name, tc := range map[string]struct {
		resources *etcdaas.MemberResources
		want      []string
	}{
		"absent":          {nil, nil},
		"whole bytes":     {&etcdaas.MemberResources{Requests: quantities("memory", "1.5Gi", "ephemeral-storage", "1k"), Limits: quantities("memory", "2Gi")}, nil},
		"huge":            {&etcdaas.MemberResources{Requests: quantities("memory", "1Ei", "ephemeral-storage", "1e100"), Limits: quantities("memory", "1000m")}, nil},
		"fraction of cpu": {&etcdaas.MemberResources{Requests: quantities("cpu", "0.5"), Limits: quantities("cpu", "1.5m")}, nil},
		"fractional bytes": {&etcdaas.MemberResources{Requests: quantities("memory", "1.5", "ephemeral-storage", "100u"), Limits: quantities("memory", "0.5")}, []string{
			`spec.resources.requests[ephemeral-storage]: fractional byte value "100u" is invalid, must be an integer`,
			`spec.resources.requests[memory]: fractional byte value "1500m" is invalid, must be an integer`,
			`spec.resources.limits[memory]: fractional byte value "500m" is invalid, must be an integer`,
		}},
	} {
		if got := ResourcesWarnings(tc.resources, path); !slices.Equal(got, tc.want) {
			t.Errorf("%s: warnings %q, want %q", name, got, tc.want)
		}
	}
}
