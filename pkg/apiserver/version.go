package apiserver

import (
	"fmt"
	"runtime/debug"
	"strings"

	"k8s.io/apimachinery/pkg/util/version"
	apimachineryversion "k8s.io/apimachinery/pkg/version"
	utilcompatibility "k8s.io/apiserver/pkg/util/compatibility"
	basecompatibility "k8s.io/component-base/compatibility"
)

// Version is the etcdaas version reported in /version's gitVersion build metadata; release
// builds set it with -ldflags "-X github.com/etcdaas/etcdaas/pkg/apiserver.Version=v1.2.3".
var Version = "dev"

// EffectiveVersion returns the effective version of the server: the Kubernetes API machinery
// it is built on (binary, emulation and minimum compatibility versions, which gate API
// machinery features), with /version reporting a parseable gitVersion such as
// "v1.37.2+etcdaas.dev" and the VCS revision of the build when known. Without this, a binary
// built without Kubernetes' ldflags reports "v0.0.0-master+$Format:%H$", which kubectl version
// cannot parse.
// base is the version to wrap; nil means the default build version.
func EffectiveVersion(base basecompatibility.EffectiveVersion) basecompatibility.EffectiveVersion {
	if base == nil {
		base = utilcompatibility.DefaultBuildEffectiveVersion()
	}
	return effectiveVersion{EffectiveVersion: base}
}

type effectiveVersion struct {
	basecompatibility.EffectiveVersion
}

// Info returns the version information served at /version.
func (v effectiveVersion) Info() *apimachineryversion.Info {
	info := v.EffectiveVersion.Info()
	if info == nil {
		return nil
	}
	out := *info
	if _, err := version.ParseSemantic(out.GitVersion); err == nil && !strings.Contains(out.GitVersion, "$Format") {
		return &out
	}
	bin := v.BinaryVersion()
	base := fmt.Sprintf("v%d.%d.%d", bin.Major(), bin.Minor(), bin.Patch())
	var revision, buildTime string
	dirty := false
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range bi.Deps {
			// k8s.io/apiserver v0.X.Y is Kubernetes 1.X.Y.
			if dep.Path == "k8s.io/apiserver" {
				if sv, err := version.ParseSemantic(dep.Version); err == nil && sv.Major() == 0 {
					base = fmt.Sprintf("v1.%d.%d", sv.Minor(), sv.Patch())
				}
			}
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.time":
				buildTime = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	out.GitVersion = base + "+etcdaas." + sanitizeBuildMetadata(Version)
	out.GitCommit = revision
	out.GitTreeState = ""
	if revision != "" {
		out.GitTreeState = "clean"
		if dirty {
			out.GitTreeState = "dirty"
		}
	}
	if buildTime != "" {
		out.BuildDate = buildTime
	}
	return &out
}

// sanitizeBuildMetadata keeps only the characters semver allows in build metadata.
func sanitizeBuildMetadata(s string) string {
	var b strings.Builder
	for _, r := range strings.TrimPrefix(s, "v") {
		switch {
		case r >= '0' && r <= '9', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r == '-', r == '.':
			b.WriteRune(r)
		default:
			b.WriteRune('-')
		}
	}
	if b.Len() == 0 {
		return "dev"
	}
	return b.String()
}
