package etcdinstance

import (
	"fmt"
	"slices"
	"strings"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
)

// VersionPolicy restricts spec.version to the etcd versions the server's backend runs, so
// that an instance it could never start is refused at admission rather than failing later.
type VersionPolicy struct {
	// Supported lists the accepted etcd versions, such as "3.7" and "3.7.3"; empty accepts every
	// version validation allows (the kubernetes backend picks among its images at sync time).
	Supported []string
	// Reason says in the error what imposes the restriction, such as
	// "standalone, local backend".
	Reason string
	// InProcess is set when the server's backend runs the members inside the server's own
	// process (standalone, local backend), which cannot give them spec.resources: a create or
	// an update that sets them is warned that they are kept but not applied.
	InProcess bool
}

// resourcesWarnings warns, when the members run in-process, about spec.resources set (on
// create, old is nil) or changed to something.
func (p VersionPolicy) resourcesWarnings(resources, old *etcdaas.MemberResources) []string {
	if !p.InProcess || resources == nil || apiequality.Semantic.DeepEqual(resources, old) {
		return nil
	}
	detail := "kept but not applied: this server runs its etcd members inside its own process"
	if p.Reason != "" {
		detail += " (" + p.Reason + ")"
	}
	return []string{"spec.resources: " + detail}
}

// check returns the error for a well-formed version the policy does not accept, nil
// otherwise.
func (p VersionPolicy) check(version string, path *field.Path) *field.Error {
	if len(p.Supported) == 0 || slices.Contains(p.Supported, version) {
		return nil
	}
	detail := fmt.Sprintf("this server runs etcd %s members only", strings.Join(p.Supported, ", "))
	if p.Reason != "" {
		detail += " (" + p.Reason + ")"
	}
	return &field.Error{Type: field.ErrorTypeNotSupported, Field: path.String(), BadValue: version, Detail: detail}
}

// restrictVersion appends the policy's error for version to errs, unless errs already
// reports the field (a missing or malformed version is told as such).
func (p VersionPolicy) restrictVersion(errs field.ErrorList, version string) field.ErrorList {
	path := field.NewPath("spec", "version")
	for _, err := range errs {
		if err.Field == path.String() {
			return errs
		}
	}
	if err := p.check(version, path); err != nil {
		errs = append(errs, err)
	}
	return errs
}
