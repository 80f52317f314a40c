package validation

import (
	"fmt"
	"maps"
	"math/big"
	"slices"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
)

// MemberResourceNames are the resources spec.resources may name: what an etcd member's
// container uses. Others (extended resources, hugepages, storage) have no meaning for it.
var MemberResourceNames = []string{"cpu", "ephemeral-storage", "memory"}

// validateResources checks spec.resources: only MemberResourceNames, no negative quantity,
// and no request above the limit of the same resource.
func validateResources(r *etcdaas.MemberResources, path *field.Path) field.ErrorList {
	requestsPath, limitsPath := path.Child("requests"), path.Child("limits")
	allErrs := validateResourceList(r.Requests, requestsPath)
	allErrs = append(allErrs, validateResourceList(r.Limits, limitsPath)...)
	for _, name := range sortedNames(r.Requests) {
		request := r.Requests[name]
		limit, ok := r.Limits[name]
		if ok && request.Cmp(limit) > 0 {
			allErrs = append(allErrs, field.Invalid(requestsPath.Key(name), request.String(),
				fmt.Sprintf("must be less than or equal to %s limit of %s", name, limit.String())))
		}
	}
	return allErrs
}

// validateResourceList checks the names and quantities of requests or limits.
func validateResourceList(list map[string]resource.Quantity, path *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	for _, name := range sortedNames(list) {
		q := list[name]
		switch {
		case !isMemberResource(name):
			allErrs = append(allErrs, field.NotSupported(path.Key(name), name, MemberResourceNames))
		case q.Sign() < 0:
			allErrs = append(allErrs, field.Invalid(path.Key(name), q.String(), "must be greater than or equal to 0"))
		}
	}
	return allErrs
}

func isMemberResource(name string) bool {
	return slices.Contains(MemberResourceNames, name)
}

// sortedNames are the keys of list in order, so that errors come in a stable order.
func sortedNames(list map[string]resource.Quantity) []string {
	return slices.Sorted(maps.Keys(list))
}

// byteResourceNames are the MemberResourceNames counted in bytes.
var byteResourceNames = map[string]bool{"ephemeral-storage": true, "memory": true}

// ResourcesWarnings warns about memory or ephemeral-storage given as a fraction of a byte
// (such as "memory: 1.5", which is 1500m bytes), as kube-apiserver warns about a container's
// resources: such a quantity is allowed but is never what was meant.
func ResourcesWarnings(r *etcdaas.MemberResources, path *field.Path) []string {
	if r == nil {
		return nil
	}
	warnings := fractionalByteWarnings(r.Requests, path.Child("requests"))
	return append(warnings, fractionalByteWarnings(r.Limits, path.Child("limits"))...)
}

func fractionalByteWarnings(list map[string]resource.Quantity, path *field.Path) []string {
	var warnings []string
	for _, name := range sortedNames(list) {
		q := list[name]
		if byteResourceNames[name] && isFractional(q) {
			warnings = append(warnings, fmt.Sprintf("%s: fractional byte value %q is invalid, must be an integer", path.Key(name), q.String()))
		}
	}
	return warnings
}

// isFractional reports whether q is not a whole number. It is exact at any size, where
// kube-apiserver's q.MilliValue()%1000 overflows above 2^63 thousandths (so that 1Ei of
// memory would be warned about).
func isFractional(q resource.Quantity) bool {
	d := q.AsDec()
	if d.Scale() <= 0 {
		return false
	}
	unit := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(d.Scale())), nil)
	return new(big.Int).Rem(d.UnscaledBig(), unit).Sign() != 0
}
