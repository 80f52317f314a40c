// Command images builds OCI images without a container engine (see package imagebuild).
//
// `go run ./hack/images project` (what `make images` runs) builds the project's images for
// linux/amd64 and linux/arm64 and prints their digests:
//
//   - ghcr.io/etcdaas/etcdaas:<version>: /etcdaas-apiserver and /etcdaas-controller, built from
//     this checkout; <version> is `git describe` of the newest v* tag, or v0.0.0-<commit
//     time>-<commit> without one (--tag overrides);
//   - ghcr.io/etcdaas/etcd:<etcd version>: etcd, etcdctl and etcdutl in /usr/local/bin, built
//     from the version hack/tools/go.mod pins.
//
// `--only etcd-previous` also builds ghcr.io/etcdaas/etcd:<previous etcd version>, the etcd
// server alone of the release hack/tools/etcd-previous/go.mod pins: the cluster tier rolls an
// instance from it to the current one.
//
// For each it writes, under --output (default _output/images):
//
//	<name>.oci.tar                  OCI image layout, the multi-platform index, named in index.json:
//	                                ctr -n k8s.io images import --all-platforms <name>.oci.tar
//	                                kind load image-archive <name>.oci.tar
//	<name>-<os>-<arch>.tar          one platform: OCI image layout plus docker manifest.json:
//	                                ctr -n k8s.io images import <file>, docker load -i <file>
//
// Two builds of one commit give the same digests: every time in the images is the commit
// time (SOURCE_DATE_EPOCH when set) and binaries are built with -trimpath.
//
// `go run ./hack/images image` builds any image of static Go binaries the same way, e.g.
//
//	go run ./hack/images image --name registry.example/pause:1 \
//	    --go-dir path/to/module --go-package ./cmd/pause=/pause --entrypoint /pause \
//	    --platform linux/amd64 --output _output/images/pause.tar
//
// with prebuilt binaries (--binary SRC=/path/in/image, one platform) or Go main packages
// built for each --platform (--go-package PKG=/path/in/image, in --go-dir).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/etcdaas/etcdaas/hack/images/imagebuild"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := &cobra.Command{
		Use:           "images",
		Short:         "Build OCI images of static Go binaries without a container engine",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(projectCommand(), imageCommand())
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
}

func projectCommand() *cobra.Command {
	var (
		output, repository, etcdRepository, tag string
		platforms, only                         []string
	)
	cmd := &cobra.Command{
		Use:   "project",
		Short: "Build the etcdaas and etcd images into _output/images and print their digests",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			ps, err := parsePlatforms(platforms)
			if err != nil {
				return err
			}
			wd, err := os.Getwd()
			if err != nil {
				return err
			}
			src, err := gitSource(ctx, wd)
			if err != nil {
				return err
			}
			if output == "" {
				output = filepath.Join(src.Root, "_output", "images")
			}
			if tag == "" {
				tag = src.Version
			}
			images, err := projectImages(ctx, src, only, repository, tag, etcdRepository)
			if err != nil {
				return err
			}
			for _, pi := range images {
				b, err := buildProjectImage(ctx, pi, ps, output)
				if err != nil {
					return fmt.Errorf("%s: %w", pi.Ref, err)
				}
				printBuilt(cmd.OutOrStdout(), src.Root, b)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&output, "output", "", "Directory of the archives (default: _output/images of the checkout).")
	f.StringSliceVar(&platforms, "platform", []string{"linux/amd64", "linux/arm64"}, "Platforms (os/arch[/variant]) of the images.")
	f.StringVar(&repository, "repository", DefaultRepository, "Repository of the etcdaas image.")
	f.StringVar(&tag, "tag", "", "Tag of the etcdaas image (default: the version derived from git).")
	f.StringVar(&etcdRepository, "etcd-repository", DefaultEtcdRepository, "Repository of the etcd image; its tag is the etcd version.")
	f.StringSliceVar(&only, "only", []string{"etcdaas", "etcd"}, "Images to build: etcdaas, etcd, and etcd-previous (the etcd server of the previous patch release, hack/tools/etcd-previous, for the cluster tier's upgrade test).")
	return cmd
}

// projectImages returns the images of the project named in only (--only): etcdaas (from src,
// as repository:tag), etcd and etcd-previous (in etcdRepository).
func projectImages(ctx context.Context, src source, only []string, repository, tag, etcdRepository string) ([]projectImage, error) {
	var images []projectImage
	for _, name := range only {
		switch name {
		case "etcdaas":
			images = append(images, etcdaasImage(src, repository, tag))
		case "etcd", "etcd-previous":
			build := etcdImage
			if name == "etcd-previous" {
				build = etcdPreviousImage
			}
			pi, err := build(ctx, src.Root, etcdRepository)
			if err != nil {
				return nil, err
			}
			images = append(images, pi)
		default:
			return nil, fmt.Errorf("--only %q: want etcdaas, etcd or etcd-previous", name)
		}
	}
	return images, nil
}

func parsePlatforms(ss []string) ([]v1.Platform, error) {
	if len(ss) == 0 {
		return nil, fmt.Errorf("no --platform")
	}
	out := make([]v1.Platform, 0, len(ss))
	for _, s := range ss {
		p, err := imagebuild.ParsePlatform(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}
