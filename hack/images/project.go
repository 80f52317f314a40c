package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/etcdaas/etcdaas/hack/images/imagebuild"
)

// Defaults of the project's images.
const (
	DefaultRepository     = "ghcr.io/etcdaas/etcdaas"
	DefaultEtcdRepository = "ghcr.io/etcdaas/etcd"
	sourceURL             = "https://github.com/etcdaas/etcdaas"
	etcdSourceURL         = "https://github.com/etcd-io/etcd"
	etcdModule            = "go.etcd.io/etcd/server/v3"
)

// projectImage is one of the images `make images` builds: its name, the go build of its
// binaries for a platform, and the spec of the image around them.
type projectImage struct {
	// Short is the archive's base name (etcdaas, etcd).
	Short string
	Ref   string
	Index map[string]string
	Build func(ctx context.Context, p v1.Platform, dir string) (imagebuild.Spec, error)
}

// etcdaasImage holds etcdaas-apiserver and etcdaas-controller at / (the Deployments in
// deploy/ run /etcdaas-apiserver and /etcdaas-controller); it has no default command.
func etcdaasImage(src source, repository, tag string) projectImage {
	labels := map[string]string{
		imagebuild.LabelSource:   sourceURL,
		imagebuild.LabelRevision: src.Revision,
		imagebuild.LabelVersion:  src.Version,
		imagebuild.LabelTitle:    "etcdaas",
		imagebuild.LabelCreated:  src.Created.Format(time.RFC3339),
	}
	gb := imagebuild.GoBuild{Dir: src.Root, LDFlags: "-X github.com/etcdaas/etcdaas/pkg/apiserver.Version=" + src.Version}
	return projectImage{
		Short: "etcdaas", Ref: repository + ":" + tag, Index: labels,
		Build: func(ctx context.Context, p v1.Platform, dir string) (imagebuild.Spec, error) {
			bins, err := gb.Build(ctx, p, dir,
				imagebuild.GoPackage{Package: "./cmd/etcdaas-apiserver", Name: "etcdaas-apiserver"},
				imagebuild.GoPackage{Package: "./cmd/etcdaas-controller", Name: "etcdaas-controller"})
			if err != nil {
				return imagebuild.Spec{}, err
			}
			return imagebuild.Spec{
				Platform: p, Created: src.Created,
				Files: []imagebuild.File{
					{Path: "/etcdaas-apiserver", Source: bins[0]},
					{Path: "/etcdaas-controller", Source: bins[1]},
				},
				Config: imagebuild.Config{Labels: labels},
			}, nil
		},
	}
}

// etcdImage holds etcd, etcdctl and etcdutl of the version hack/tools/go.mod pins, where the
// upstream image has them (/usr/local/bin, on PATH, etcd the default command), running as
// 65532 with /var/lib/etcd writable. Its creation time is the time of that etcd version, so
// it changes only with the version (and the Go toolchain).
func etcdImage(ctx context.Context, root, repository string) (projectImage, error) {
	return etcdImageOf(ctx, filepath.Join(root, "hack", "tools"), repository, "etcd",
		imagebuild.GoPackage{Package: etcdModule, Name: "etcd"},
		imagebuild.GoPackage{Package: "go.etcd.io/etcd/etcdctl/v3", Name: "etcdctl"},
		imagebuild.GoPackage{Package: "go.etcd.io/etcd/etcdutl/v3", Name: "etcdutl"})
}

// etcdPreviousImage is the etcd image of the previous patch release, which
// hack/tools/etcd-previous/go.mod pins: the release the cluster tier upgrades instances from.
// It is laid out as etcdImage but holds the etcd server only, to keep its build small.
func etcdPreviousImage(ctx context.Context, root, repository string) (projectImage, error) {
	return etcdImageOf(ctx, filepath.Join(root, "hack", "tools", "etcd-previous"), repository, "etcd-previous",
		imagebuild.GoPackage{Package: etcdModule, Name: "etcd"})
}

// etcdImageOf is the etcd image of the etcd version the module in toolsDir pins, tagged
// with that version, holding the binaries of pkgs (the etcd server first) in /usr/local/bin.
func etcdImageOf(ctx context.Context, toolsDir, repository, short string, pkgs ...imagebuild.GoPackage) (projectImage, error) {
	version, created, err := goModuleInfo(ctx, toolsDir, etcdModule)
	if err != nil {
		return projectImage{}, err
	}
	labels := map[string]string{
		imagebuild.LabelSource: etcdSourceURL,
		// The module proxy does not record the commit: the tag names the revision.
		imagebuild.LabelRevision: version,
		imagebuild.LabelVersion:  version,
		imagebuild.LabelTitle:    "etcd",
		imagebuild.LabelCreated:  created.Format(time.RFC3339),
	}
	gb := imagebuild.GoBuild{Dir: toolsDir}
	return projectImage{
		Short: short, Ref: repository + ":" + version, Index: labels,
		Build: func(ctx context.Context, p v1.Platform, dir string) (imagebuild.Spec, error) {
			bins, err := gb.Build(ctx, p, dir, pkgs...)
			if err != nil {
				return imagebuild.Spec{}, err
			}
			var files []imagebuild.File
			for i, pkg := range pkgs {
				files = append(files, imagebuild.File{Path: "/usr/local/bin/" + pkg.Name, Source: bins[i]})
			}
			return imagebuild.Spec{
				Platform: p, Created: created,
				Files:       files,
				Directories: []imagebuild.Directory{{Path: "/var/lib/etcd", Mode: 0o700, UID: imagebuild.Nonroot, GID: imagebuild.Nonroot}},
				Config: imagebuild.Config{
					Cmd: []string{"/usr/local/bin/etcd"}, WorkingDir: "/var/lib/etcd", Labels: labels,
					ExposedPorts: []string{"2379/tcp", "2380/tcp"},
				},
			}, nil
		},
	}, nil
}

// Built is what building one project image wrote.
type Built struct {
	Ref string
	// Index is the digest of the multi-platform index; Archive its OCI layout tarball.
	Index   v1.Hash
	Archive string
	// Platforms are the per-platform images, in the order built.
	Platforms []BuiltPlatform
}

// BuiltPlatform is one platform's image and its single-platform archive.
type BuiltPlatform struct {
	Platform v1.Platform
	Digest   v1.Hash
	Archive  string
}

// buildProjectImage builds pi for every platform and writes <out>/<short>.oci.tar (the index)
// and <out>/<short>-<os>-<arch>[-<variant>].tar (each platform).
func buildProjectImage(ctx context.Context, pi projectImage, platforms []v1.Platform, out string) (Built, error) {
	tmp, err := os.MkdirTemp("", "etcdaas-images-")
	if err != nil {
		return Built{}, err
	}
	defer os.RemoveAll(tmp)
	res := Built{Ref: pi.Ref, Archive: filepath.Join(out, pi.Short+".oci.tar")}
	var imgs []v1.Image
	for _, p := range platforms {
		spec, err := pi.Build(ctx, p, filepath.Join(tmp, platformSuffix(p)))
		if err != nil {
			return Built{}, err
		}
		img, err := imagebuild.Build(spec)
		if err != nil {
			return Built{}, fmt.Errorf("%s %s: %w", pi.Ref, p.String(), err)
		}
		d, err := img.Digest()
		if err != nil {
			return Built{}, err
		}
		archive := filepath.Join(out, pi.Short+"-"+platformSuffix(p)+".tar")
		if err := imagebuild.WriteImageArchive(archive, pi.Ref, img); err != nil {
			return Built{}, err
		}
		imgs = append(imgs, img)
		res.Platforms = append(res.Platforms, BuiltPlatform{Platform: p, Digest: d, Archive: archive})
	}
	idx, err := imagebuild.Index(pi.Index, imgs...)
	if err != nil {
		return Built{}, err
	}
	if res.Index, err = idx.Digest(); err != nil {
		return Built{}, err
	}
	return res, imagebuild.WriteIndexArchive(res.Archive, pi.Ref, idx)
}

func platformSuffix(p v1.Platform) string {
	parts := []string{p.OS, p.Architecture}
	if p.Variant != "" {
		parts = append(parts, p.Variant)
	}
	return strings.Join(parts, "-")
}

func printBuilt(w io.Writer, root string, b Built) {
	rel := func(p string) string {
		if r, err := filepath.Rel(root, p); err == nil && !strings.HasPrefix(r, "..") {
			return r
		}
		return p
	}
	fmt.Fprintf(w, "%s@%s\t%s\n", b.Ref, b.Index, rel(b.Archive))
	for _, p := range b.Platforms {
		fmt.Fprintf(w, "  %-13s %s\t%s\n", p.Platform.String(), p.Digest, rel(p.Archive))
	}
}
