package validation

import (
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
)

// etcdVersion is a parsed etcd version: "3.7" (a minor, Patch -1) or "3.7.3".
type etcdVersion struct {
	Major, Minor, Patch int
}

// parseEtcdVersion parses "3.7", "3.7.3" or a reported server version such as "3.7.3" or
// "v3.7.3-alpha.0" (a pre-release suffix is ignored). ok is false for anything else.
func parseEtcdVersion(s string) (v etcdVersion, ok bool) {
	s = strings.TrimPrefix(s, "v")
	if i := strings.IndexAny(s, "-+"); i >= 0 {
		s = s[:i]
	}
	parts := strings.Split(s, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return v, false
	}
	nums := []int{0, 0, -1}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return v, false
		}
		nums[i] = n
	}
	return etcdVersion{Major: nums[0], Minor: nums[1], Patch: nums[2]}, true
}

// String formats the version as it was given: minor only when it has no patch.
func (v etcdVersion) String() string {
	if v.Patch < 0 {
		return fmt.Sprintf("%d.%d", v.Major, v.Minor)
	}
	return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch)
}

// minor is the major.minor of the version.
func (v etcdVersion) minor() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// below reports whether v is older than o: by minor, then by patch when both name one.
func (v etcdVersion) below(o etcdVersion) bool {
	if v.Major != o.Major {
		return v.Major < o.Major
	}
	if v.Minor != o.Minor {
		return v.Minor < o.Minor
	}
	return v.Patch >= 0 && o.Patch >= 0 && v.Patch < o.Patch
}

// reportedVersions are the versions an instance's members run, as status reports them.
type reportedVersions struct {
	// lowest and highest are the lowest and highest versions, named by lowestFrom and
	// highestFrom for error messages. While no member reports a version, both are the
	// version the spec asked for.
	lowest, highest         etcdVersion
	lowestFrom, highestFrom string
}

// runningVersions reads the versions the members of old report; ok is false when neither
// the members nor the spec name a readable version.
func runningVersions(old *etcdaas.ETCDInstance) (r reportedVersions, ok bool) {
	for _, m := range old.Status.Members {
		mv, parsed := parseEtcdVersion(m.Version)
		if !parsed {
			continue
		}
		if !ok || mv.below(r.lowest) {
			r.lowest, r.lowestFrom = mv, fmt.Sprintf("member %s reports etcd %s, the lowest version of the members", m.Name, mv)
		}
		if !ok || r.highest.below(mv) {
			r.highest, r.highestFrom = mv, fmt.Sprintf("member %s already runs etcd %s", m.Name, mv)
		}
		ok = true
	}
	if ok {
		return r, true
	}
	v, ok := parseEtcdVersion(old.Spec.Version)
	from := fmt.Sprintf("no member reports its version yet and spec.version was %q", old.Spec.Version)
	return reportedVersions{lowest: v, highest: v, lowestFrom: from, highestFrom: from}, ok
}

// validateVersionChange checks a change of spec.version against what the members run: an
// upgrade goes to the same or the next minor version of the lowest version the members
// report (etcd upgrades one minor at a time, every member on the older minor first), never
// below that version and never to a minor older than one a member already runs. Going back
// to the lowest reported release of the same minor, such as after a failed roll, is allowed.
func validateVersionChange(newObj, oldObj *etcdaas.ETCDInstance, path *field.Path) field.ErrorList {
	if newObj.Spec.Version == oldObj.Spec.Version {
		return nil
	}
	target, ok := parseEtcdVersion(newObj.Spec.Version)
	if !ok || !versionPattern.MatchString(newObj.Spec.Version) {
		return nil // validateSpec reports the malformed version
	}
	running, ok := runningVersions(oldObj)
	if !ok {
		return nil
	}
	const downgrade = "etcd %s is older than what the members run (%s): downgrades are not supported; restore a backup into a new instance instead"
	switch {
	case target.below(running.lowest):
		return field.ErrorList{field.Forbidden(path, fmt.Sprintf(downgrade, target, running.lowestFrom))}
	case target.Major < running.highest.Major || (target.Major == running.highest.Major && target.Minor < running.highest.Minor):
		return field.ErrorList{field.Forbidden(path, fmt.Sprintf(downgrade, target, running.highestFrom))}
	case target.Major != running.lowest.Major || target.Minor > running.lowest.Minor+1:
		return field.ErrorList{field.Forbidden(path, fmt.Sprintf(
			"etcd %s skips a minor version (%s): upgrade one minor version at a time, to %s or %d.%d first",
			target, running.lowestFrom, running.lowest.minor(), running.lowest.Major, running.lowest.Minor+1))}
	}
	return nil
}
