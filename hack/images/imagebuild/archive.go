package imagebuild

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// AnnotationImageName is the index.json annotation containerd (and docker load) take the full
// image name from; org.opencontainers.image.ref.name holds only the tag.
const AnnotationImageName = "io.containerd.image.name"

// AnnotationRefName is the OCI image layout annotation of a reference's tag.
const AnnotationRefName = "org.opencontainers.image.ref.name"

// WriteIndexArchive writes idx as a tar of an OCI image layout whose index.json has one entry:
// idx, named ref. `ctr images import --all-platforms` and `kind load image-archive` accept it.
func WriteIndexArchive(file, ref string, idx v1.ImageIndex) error {
	tag, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("image name %q: %w", ref, err)
	}
	return writeLayoutArchive(file, func(p layout.Path) error {
		return p.AppendIndex(idx, layout.WithAnnotations(nameAnnotations(tag)))
	}, nil)
}

// WriteImageArchive writes img as a tar of an OCI image layout whose index.json names it ref,
// plus a Docker manifest.json (config and layers by their blobs/sha256 paths, RepoTags ref).
// containerd imports the OCI layout (with the same digests as in an index); docker load and
// tarball.ImageFromPath read manifest.json.
func WriteImageArchive(file, ref string, img v1.Image) error {
	tag, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("image name %q: %w", ref, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	opts := []layout.Option{layout.WithAnnotations(nameAnnotations(tag))}
	if p := cf.Platform(); p != nil {
		opts = append(opts, layout.WithPlatform(*p))
	}
	manifest, err := dockerManifest(tag, img)
	if err != nil {
		return err
	}
	return writeLayoutArchive(file, func(p layout.Path) error { return p.AppendImage(img, opts...) }, manifest)
}

func nameAnnotations(tag name.Tag) map[string]string {
	return map[string]string{AnnotationImageName: tag.Name(), AnnotationRefName: tag.TagStr()}
}

// dockerManifest is the manifest.json of the docker-archive format pointing at the layout's
// blobs.
func dockerManifest(tag name.Tag, img v1.Image) ([]byte, error) {
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	d := tarball.Descriptor{Config: blobPath(m.Config.Digest), RepoTags: []string{tag.Name()}}
	for _, l := range m.Layers {
		d.Layers = append(d.Layers, blobPath(l.Digest))
	}
	return json.Marshal(tarball.Manifest{d})
}

func blobPath(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

// writeLayoutArchive writes an OCI image layout into a temporary directory next to file,
// fills it with add, and tars it into file (atomically: a partial file never has file's name).
// dockerManifest, when set, is written as manifest.json.
func writeLayoutArchive(file string, add func(layout.Path) error, dockerManifest []byte) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(filepath.Dir(file), ".layout-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	if err := add(p); err != nil {
		return err
	}
	if dockerManifest != nil {
		if err := os.WriteFile(filepath.Join(dir, "manifest.json"), dockerManifest, 0o644); err != nil {
			return err
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), ".archive-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tarDir(tmp, dir); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), file)
}

// tarDir writes the tree under dir as a tar with sorted entries, mtime zero, root-owned,
// so that the archive's bytes depend only on the layout's content.
func tarDir(w io.Writer, dir string) error {
	var names []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			names = append(names, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(names)
	tw := tar.NewWriter(w)
	for _, p := range names {
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if err := tarFile(tw, p, filepath.ToSlash(rel)); err != nil {
			return err
		}
	}
	return tw.Close()
}

func tarFile(tw *tar.Writer, p, name string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	hdr := &tar.Header{Name: name, ModTime: time.Unix(0, 0).UTC(), Format: tar.FormatPAX}
	switch {
	case fi.IsDir():
		hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, name+"/", 0o755
		return tw.WriteHeader(hdr)
	case fi.Mode().IsRegular():
		hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, 0o644, fi.Size()
	default:
		return fmt.Errorf("%s: not a file or directory", p)
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(tw, f)
	return err
}
