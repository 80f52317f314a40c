package kubernetes

import (
	"fmt"
	"strings"

	"github.com/distribution/reference"
)

// DefaultImage is the etcd image of members unless Options.Image says otherwise: the public
// etcd release images, tagged with the release tag of the instance's etcd version.
const DefaultImage = "gcr.io/etcd-development/etcd"

// TagPlaceholder stands, in the tag of an etcd image template, for the release tag of the
// instance's etcd version (Options.ImageTags, e.g. v3.7.3).
const TagPlaceholder = "{tag}"

// imageTemplate is a checked etcd image setting: the repository and a tag holding
// TagPlaceholder.
type imageTemplate struct {
	repository, tag string
}

// parseImage checks an etcd image setting (the controller's --etcd-image), one of
//
//   - a repository, e.g. registry.internal:5000/mirror/etcd: members run REPOSITORY:<tag>;
//   - REPOSITORY:TAG with {tag} in TAG, e.g. registry.internal/etcd:{tag}-distroless.
//
// where <tag> is the release tag of the instance's etcd version. A fixed tag or a digest is
// refused: it would run one etcd version whatever spec.version says. tags are the release
// tags the template must turn into valid image references.
func parseImage(s string, tags map[string]string) (imageTemplate, error) {
	if s == "" {
		return imageTemplate{}, fmt.Errorf("etcd image: empty")
	}
	if strings.Contains(s, "@") {
		return imageTemplate{}, fmt.Errorf("etcd image %q: a digest names one etcd version; give a repository or REPOSITORY:TAG with %s in TAG", s, TagPlaceholder)
	}
	t := imageTemplate{repository: s, tag: TagPlaceholder}
	// A colon after the last slash starts the tag; one before it is a registry port.
	if i := strings.LastIndex(s, ":"); i > strings.LastIndex(s, "/") {
		t.repository, t.tag = s[:i], s[i+1:]
		if !strings.Contains(t.tag, TagPlaceholder) {
			return imageTemplate{}, fmt.Errorf("etcd image %q: the tag %q has no %s, so every etcd version would run one image", s, t.tag, TagPlaceholder)
		}
	}
	check := make([]string, 0, len(tags)+1)
	check = append(check, "v0.0.0")
	for _, tag := range tags {
		check = append(check, tag)
	}
	for _, tag := range check {
		ref := t.image(tag)
		named, err := reference.ParseNormalizedNamed(ref)
		if err != nil {
			return imageTemplate{}, fmt.Errorf("etcd image %q: %s is not an image reference: %w", s, ref, err)
		}
		if _, ok := named.(reference.Tagged); !ok {
			return imageTemplate{}, fmt.Errorf("etcd image %q: %s has no tag", s, ref)
		}
	}
	return t, nil
}

// image is the image of the release tag tag.
func (t imageTemplate) image(tag string) string {
	return t.repository + ":" + strings.ReplaceAll(t.tag, TagPlaceholder, tag)
}
