package imagebuild

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Named is an image or index an archive's index.json names.
type Named struct {
	// Name is the full image name (the io.containerd.image.name annotation).
	Name string
	// Descriptor is the index.json entry: media type, digest, size and, for a single-platform
	// image, the platform.
	Descriptor v1.Descriptor
}

// ReadNames returns the named entries of the index.json of an OCI layout archive (as written
// by WriteIndexArchive and WriteImageArchive), for a harness that loads the archive and then
// refers to the image by name or digest.
func ReadNames(file string) ([]Named, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: no index.json: not an OCI image layout archive", file)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if hdr.Name != "index.json" {
			continue
		}
		var idx v1.IndexManifest
		if err := json.NewDecoder(io.LimitReader(tr, 1<<20)).Decode(&idx); err != nil {
			return nil, fmt.Errorf("%s: index.json: %w", file, err)
		}
		var out []Named
		for _, d := range idx.Manifests {
			if n := d.Annotations[AnnotationImageName]; n != "" {
				out = append(out, Named{Name: n, Descriptor: d})
			}
		}
		return out, nil
	}
}
