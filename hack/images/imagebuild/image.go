// Package imagebuild builds reproducible OCI images of static Go binaries without a container
// engine, with go-containerregistry.
//
// An image is a small fixed base layer (/etc/passwd and /etc/group with root and nonroot
// 65532, /etc/nsswitch.conf, /tmp, /home/nonroot; no shell, no libc) and one layer with the
// files of the Spec. Every tar entry has the Spec's creation time as its mtime, root or the
// given owner, normalized permissions, and entries are sorted, so the same inputs always give
// the same digest. Set Created from the commit time (SOURCE_DATE_EPOCH) to make a build
// reproducible from its commit.
//
// Building an image from test code or another tool:
//
//	bins, err := imagebuild.GoBuild{Dir: moduleDir}.Build(ctx, platform, tmpDir,
//		imagebuild.GoPackage{Package: "./cmd/pause", Name: "pause"})
//	img, err := imagebuild.Build(imagebuild.Spec{
//		Platform: platform,
//		Created:  created,
//		Files:    []imagebuild.File{{Path: "/pause", Source: bins[0]}},
//		Config:   imagebuild.Config{Entrypoint: []string{"/pause"}},
//	})
//	err = imagebuild.WriteImageArchive("pause.tar", "registry.k8s.io/pause:3.10", img)
//
// or, from the command line, `go run ./hack/images image --name registry.k8s.io/pause:3.10
// --go-package ./cmd/pause=/pause --entrypoint /pause --output pause.tar` (see hack/images).
//
// Archives: WriteIndexArchive writes a multi-platform OCI image layout as a tar, and
// WriteImageArchive one platform's image as an OCI image layout that also carries a Docker
// manifest.json. Both name the image in index.json with the annotations containerd reads
// (io.containerd.image.name and org.opencontainers.image.ref.name), so `ctr images import`
// and `kind load image-archive` (which runs ctr) tag it; `docker load` reads the manifest.json
// of the single-platform archive.
package imagebuild

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Nonroot is the user and group images run as unless Config.User says otherwise, as in the
// distroless images.
const Nonroot = 65532

// DefaultPath is the PATH of an image whose Config.Env does not set one.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Standard OCI annotation and label keys the builder sets.
const (
	LabelCreated  = "org.opencontainers.image.created"
	LabelSource   = "org.opencontainers.image.source"
	LabelRevision = "org.opencontainers.image.revision"
	LabelVersion  = "org.opencontainers.image.version"
	LabelTitle    = "org.opencontainers.image.title"
)

// File is a regular file of an image.
type File struct {
	// Path is the absolute path in the image, e.g. /usr/local/bin/etcd.
	Path string
	// Source is the file on this machine whose content the image holds.
	Source string
	// Mode is the permission bits; 0 means 0755 if Source is executable by its owner, else 0644.
	Mode int64
}

// Directory is a directory of an image that no File implies, or one with another owner.
type Directory struct {
	// Path is the absolute path in the image.
	Path string
	// Mode is the permission bits (0 means 0755).
	Mode int64
	// UID and GID own the directory.
	UID, GID int
}

// Config is the runtime configuration of an image.
type Config struct {
	// Entrypoint and Cmd are the image's default command.
	Entrypoint, Cmd []string
	// Env is the environment (NAME=value); DefaultPath is added when it sets no PATH.
	Env []string
	// User is "uid:gid"; empty means 65532:65532 (Nonroot).
	User string
	// WorkingDir is the working directory of the command.
	WorkingDir string
	// Labels are the image config labels; Build adds org.opencontainers.image.created.
	Labels map[string]string
	// ExposedPorts are documentation of the ports the command listens on, e.g. "2379/tcp".
	ExposedPorts []string
}

// Spec is one image for one platform.
type Spec struct {
	// Platform is the image's OS, architecture and variant (e.g. linux/arm64).
	Platform v1.Platform
	// Created is the creation time of the image and the mtime of every file in it; use the
	// commit time of the sources for reproducible builds.
	Created time.Time
	// Files and Directories are the contents of the image besides the base layer.
	Files       []File
	Directories []Directory
	// Config is the runtime configuration.
	Config Config
}

// Build returns the image of spec: the base layer, a layer of spec's files, and an OCI image
// config. Its manifest carries the config labels as annotations too.
func Build(spec Spec) (v1.Image, error) {
	if spec.Platform.OS == "" || spec.Platform.Architecture == "" {
		return nil, fmt.Errorf("platform %q: OS and architecture are required", spec.Platform.String())
	}
	created := spec.Created.UTC().Truncate(time.Second)
	if created.IsZero() {
		return nil, fmt.Errorf("the creation time is required (the commit time, for reproducible builds)")
	}
	base, err := layer(baseEntries(), created)
	if err != nil {
		return nil, fmt.Errorf("base layer: %w", err)
	}
	entries, err := specEntries(spec)
	if err != nil {
		return nil, err
	}
	files, err := layer(entries, created)
	if err != nil {
		return nil, err
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, History: v1.History{Created: v1.Time{Time: created}, CreatedBy: "imagebuild: base (passwd, group, nsswitch.conf, tmp, home)"}},
		mutate.Addendum{Layer: files, History: v1.History{Created: v1.Time{Time: created}, CreatedBy: "imagebuild: files " + strings.Join(filePaths(spec.Files), " ")}},
	)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: created}
	cf.OS, cf.Architecture, cf.Variant, cf.OSVersion = spec.Platform.OS, spec.Platform.Architecture, spec.Platform.Variant, spec.Platform.OSVersion
	cf.Config = runtimeConfig(spec.Config, created)
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, err
	}
	return mutate.Annotations(img, cf.Config.Labels).(v1.Image), nil
}

// Index returns the OCI image index of images (one per platform, each platform taken from
// the image's config), annotated with annotations.
func Index(annotations map[string]string, images ...v1.Image) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	seen := map[string]bool{}
	for _, img := range images {
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, err
		}
		p := cf.Platform()
		if p == nil {
			return nil, fmt.Errorf("an image without a platform cannot go into an index")
		}
		if seen[p.String()] {
			return nil, fmt.Errorf("two images for platform %s", p)
		}
		seen[p.String()] = true
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: p}})
	}
	if len(annotations) == 0 {
		return idx, nil
	}
	return mutate.Annotations(idx, annotations).(v1.ImageIndex), nil
}

// ParsePlatform parses "os/arch[/variant]", e.g. linux/arm64.
func ParsePlatform(s string) (v1.Platform, error) {
	p, err := v1.ParsePlatform(s)
	if err != nil {
		return v1.Platform{}, err
	}
	if p.OS == "" || p.Architecture == "" || strings.Count(s, "/") == 0 {
		return v1.Platform{}, fmt.Errorf("platform %q: want os/arch[/variant]", s)
	}
	return *p, nil
}

func runtimeConfig(c Config, created time.Time) v1.Config {
	labels := map[string]string{LabelCreated: created.Format(time.RFC3339)}
	for k, v := range c.Labels {
		labels[k] = v
	}
	env := append([]string(nil), c.Env...)
	hasPath := false
	for _, e := range env {
		hasPath = hasPath || strings.HasPrefix(e, "PATH=")
	}
	if !hasPath {
		env = append([]string{DefaultPath}, env...)
	}
	user := c.User
	if user == "" {
		user = fmt.Sprintf("%d:%d", Nonroot, Nonroot)
	}
	var ports map[string]struct{}
	if len(c.ExposedPorts) > 0 {
		ports = map[string]struct{}{}
		for _, p := range c.ExposedPorts {
			ports[p] = struct{}{}
		}
	}
	return v1.Config{
		Entrypoint: c.Entrypoint, Cmd: c.Cmd, Env: env, User: user, WorkingDir: c.WorkingDir,
		Labels: labels, ExposedPorts: ports,
	}
}

// entry is one tar entry of a layer: a directory, or a file with its content from source or
// data.
type entry struct {
	name     string // relative, without a leading slash
	dir      bool
	mode     int64
	uid, gid int
	source   string
	data     []byte
}

// baseEntries is what every image holds: the users, name resolution through /etc/hosts
// first, a world-writable /tmp and nonroot's home.
func baseEntries() []entry {
	return []entry{
		{name: "etc", dir: true, mode: 0o755},
		{name: "etc/group", mode: 0o644, data: []byte("root:x:0:\nnonroot:x:65532:\n")},
		{name: "etc/nsswitch.conf", mode: 0o644, data: []byte("hosts: files dns\n")},
		{name: "etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{name: "home", dir: true, mode: 0o755},
		{name: "home/nonroot", dir: true, mode: 0o700, uid: Nonroot, gid: Nonroot},
		{name: "root", dir: true, mode: 0o700},
		{name: "tmp", dir: true, mode: 0o1777},
	}
}

// specEntries are the files and directories of spec with every parent directory, sorted.
func specEntries(spec Spec) ([]entry, error) {
	byName := map[string]entry{}
	addParents := func(name string) {
		for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
			if _, ok := byName[dir]; !ok {
				byName[dir] = entry{name: dir, dir: true, mode: 0o755}
			}
		}
	}
	for _, d := range spec.Directories {
		name, err := relName(d.Path)
		if err != nil {
			return nil, err
		}
		mode := d.Mode
		if mode == 0 {
			mode = 0o755
		}
		byName[name] = entry{name: name, dir: true, mode: mode, uid: d.UID, gid: d.GID}
	}
	for _, f := range spec.Files {
		name, err := relName(f.Path)
		if err != nil {
			return nil, err
		}
		if _, dup := byName[name]; dup {
			return nil, fmt.Errorf("%s is in the image twice", f.Path)
		}
		fi, err := os.Stat(f.Source)
		if err != nil {
			return nil, err
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("%s (for %s) is not a regular file", f.Source, f.Path)
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
			if fi.Mode().Perm()&0o100 != 0 {
				mode = 0o755
			}
		}
		byName[name] = entry{name: name, mode: mode, source: f.Source}
	}
	for name := range byName {
		addParents(name)
	}
	entries := make([]entry, 0, len(byName))
	for _, e := range byName {
		entries = append(entries, e)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	return entries, nil
}

func relName(p string) (string, error) {
	clean := path.Clean(p)
	if !path.IsAbs(p) || clean == "/" || clean != p {
		return "", fmt.Errorf("image path %q: want a clean absolute path below /", p)
	}
	return strings.TrimPrefix(clean, "/"), nil
}

func filePaths(files []File) []string {
	out := make([]string, 0, len(files))
	for _, f := range files {
		out = append(out, f.Path)
	}
	sort.Strings(out)
	return out
}

// layer is the gzip-compressed OCI layer of entries (already sorted) with mtime created.
func layer(entries []entry, created time.Time) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		if err := writeEntry(tw, e, created); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(
		func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		tarball.WithMediaType(types.OCILayer),
		tarball.WithCompressionLevel(gzip.DefaultCompression),
		tarball.WithCompressedCaching,
	)
	if err != nil {
		return nil, err
	}
	return plainLayer{l}, nil
}

// plainLayer hides the Descriptor method of tarball layers, whose empty (non-nil) annotations
// would make the image's parsed Manifest() differ from its RawManifest().
type plainLayer struct{ v1.Layer }

func writeEntry(tw *tar.Writer, e entry, created time.Time) error {
	hdr := &tar.Header{
		Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.gid, ModTime: created,
		Format: tar.FormatPAX,
	}
	if e.dir {
		hdr.Typeflag, hdr.Name = tar.TypeDir, e.name+"/"
		return tw.WriteHeader(hdr)
	}
	hdr.Typeflag = tar.TypeReg
	if e.source == "" {
		hdr.Size = int64(len(e.data))
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := tw.Write(e.data)
		return err
	}
	f, err := os.Open(e.source)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	hdr.Size = fi.Size()
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	n, err := io.Copy(tw, f)
	if err != nil {
		return fmt.Errorf("%s: %w", e.source, err)
	}
	if n != hdr.Size {
		return fmt.Errorf("%s changed while it was read", e.source)
	}
	return nil
}
