package kubernetes

import (
	"strings"
	"testing"

	"k8s.io/client-go/kubernetes/fake"
)

// The etcd image setting: a repository gets the release tag of the instance's version, a
// template puts it where {tag} is; settings that would run one image for every version, or
// that are no image reference, are refused when the backend starts.
func TestImageSetting(t *testing.T) {
	for _, tc := range []struct {
		image string
		want  map[string]string // spec.version -> image
	}{
		{"", map[string]string{"": DefaultImage + ":v3.7.3", "3.5": DefaultImage + ":v3.5.21"}},
		{"registry.internal/etcd", map[string]string{"3.7": "registry.internal/etcd:v3.7.3", "v3.6": "registry.internal/etcd:v3.6.5"}},
		{"registry.internal:5000/mirror/etcd", map[string]string{"3.7": "registry.internal:5000/mirror/etcd:v3.7.3"}},
		{"localhost:5000/etcd:{tag}", map[string]string{"3.5": "localhost:5000/etcd:v3.5.21"}},
		{"registry.internal/etcd:{tag}-distroless", map[string]string{"3.7": "registry.internal/etcd:v3.7.3-distroless"}},
		{"registry.internal/etcd:mirror-{tag}", map[string]string{"3.6": "registry.internal/etcd:mirror-v3.6.5"}},
		{"etcd", map[string]string{"3.7": "etcd:v3.7.3"}},
		{"ghcr.io/etcdaas/etcd", map[string]string{"3.7": "ghcr.io/etcdaas/etcd:v3.7.3"}},
	} {
		b, err := New(Options{Client: fake.NewClientset(), Image: tc.image})
		if err != nil {
			t.Fatalf("%q: %v", tc.image, err)
		}
		for version, want := range tc.want {
			inst := testInstance()
			inst.Spec.Version = version
			if got, err := b.Image(inst); err != nil || got != want {
				t.Errorf("%q, version %q: %q (%v), want %q", tc.image, version, got, err, want)
			}
		}
	}

	for image, wantErr := range map[string]string{
		"registry.internal/etcd:v3.7.3":                                "has no {tag}",
		"registry.internal:5000/etcd:latest":                           "has no {tag}",
		"registry.internal/etcd@sha256:" + hex64:                       "digest",
		"Registry.Internal/ETCD":                                       "not an image reference",
		"registry.internal/etcd:{tag}/x":                               "not an image reference",
		"registry.internal/{tag}/etcd":                                 "not an image reference",
		"registry.internal/etcd:{tag}:x":                               "has no {tag}",
		"registry.internal/etcd:" + strings.Repeat("x", 130) + "{tag}": "not an image reference",
		" registry.internal/etcd":                                      "not an image reference",
	} {
		if _, err := New(Options{Client: fake.NewClientset(), Image: image}); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%q: error %v, want one saying %q", image, err, wantErr)
		}
	}

	// Tags of a custom version mapping are checked too.
	if _, err := New(Options{Client: fake.NewClientset(), Image: "registry.internal/etcd", ImageTags: map[string]string{"3.7": "v3.7.3 "}}); err == nil {
		t.Error("a release tag with a space")
	}
}

const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
