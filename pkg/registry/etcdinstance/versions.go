package etcdinstance

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
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
