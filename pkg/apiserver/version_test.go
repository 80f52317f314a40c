package apiserver

import (
	"testing"

	utilversion "k8s.io/apimachinery/pkg/util/version"
)

func TestEffectiveVersionInfo(t *testing.T) {
	info := EffectiveVersion(nil).Info()
	v, err := utilversion.ParseSemantic(info.GitVersion)
	if err != nil {
		t.Fatalf("gitVersion %q is not semver: %v", info.GitVersion, err)
	}
	if v.Major() != 1 || info.Major != "1" || info.Minor == "" {
		t.Errorf("info %+v", info)
	}
	if got := v.BuildMetadata(); got != "etcdaas."+sanitizeBuildMetadata(Version) {
		t.Errorf("build metadata %q", got)
	}
}

func TestSanitizeBuildMetadata(t *testing.T) {
	for in, want := range map[string]string{"v1.2.3": "1.2.3", "dev": "dev", "": "dev", "a+b/c": "a-b-c"} {
		if got := sanitizeBuildMetadata(in); got != want {
			t.Errorf("sanitizeBuildMetadata(%q) = %q, want %q", in, got, want)
		}
	}
}
