package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/etcdaas/etcdaas/hack/images/imagebuild"
)

// imageFlags are the flags of `images image`.
type imageFlags struct {
	name, output, goDir, ldflags, tags, user, workdir string
	platforms, binaries, goPackages                   []string
	entrypoint, cmd, env, ports                       []string
	labels                                            map[string]string
}

func imageCommand() *cobra.Command {
	var f imageFlags
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Build one image of static Go binaries into an archive and print its digest",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			digest, err := buildImage(cmd.Context(), f)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s@%s\t%s\n", f.name, digest, f.output)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.name, "name", "", "Image name with a tag, e.g. registry.example/pause:1 (required).")
	fs.StringVar(&f.output, "output", "", "Archive to write (required). One platform: an OCI layout with a docker manifest.json; several: the OCI layout of an index.")
	fs.StringSliceVar(&f.platforms, "platform", []string{"linux/amd64"}, "Platforms (os/arch[/variant]).")
	fs.StringArrayVar(&f.binaries, "binary", nil, "SRC=/path/in/image: a prebuilt static binary (one platform only). Repeatable.")
	fs.StringArrayVar(&f.goPackages, "go-package", nil, "PKG=/path/in/image: a Go main package built for each platform in --go-dir. Repeatable.")
	fs.StringVar(&f.goDir, "go-dir", ".", "Module directory --go-package builds in.")
	fs.StringVar(&f.ldflags, "ldflags", "", "Go linker flags added to -s -w.")
	fs.StringVar(&f.tags, "tags", "", "Go build tags.")
	fs.StringArrayVar(&f.entrypoint, "entrypoint", nil, "Entrypoint, one argument per flag.")
	fs.StringArrayVar(&f.cmd, "cmd", nil, "Cmd, one argument per flag.")
	fs.StringArrayVar(&f.env, "env", nil, "NAME=value in the environment. Repeatable.")
	fs.StringArrayVar(&f.ports, "port", nil, "Exposed port, e.g. 53/udp. Repeatable.")
	fs.StringToStringVar(&f.labels, "label", nil, "Config labels and manifest annotations (key=value).")
	fs.StringVar(&f.user, "user", "", "uid:gid (default 65532:65532).")
	fs.StringVar(&f.workdir, "workdir", "", "Working directory.")
	return cmd
}

func buildImage(ctx context.Context, f imageFlags) (v1.Hash, error) {
	if f.name == "" || f.output == "" {
		return v1.Hash{}, fmt.Errorf("--name and --output are required")
	}
	if len(f.binaries)+len(f.goPackages) == 0 {
		return v1.Hash{}, fmt.Errorf("nothing to put in the image: give --binary or --go-package")
	}
	platforms, err := parsePlatforms(f.platforms)
	if err != nil {
		return v1.Hash{}, err
	}
	if len(f.binaries) > 0 && len(platforms) > 1 {
		return v1.Hash{}, fmt.Errorf("--binary is built for one platform: give one --platform, or use --go-package")
	}
	created, err := imageCreated(ctx, f.goDir)
	if err != nil {
		return v1.Hash{}, err
	}
	tmp, err := os.MkdirTemp("", "etcdaas-image-")
	if err != nil {
		return v1.Hash{}, err
	}
	defer os.RemoveAll(tmp)
	var imgs []v1.Image
	for _, p := range platforms {
		files, err := imageFiles(ctx, f, p, filepath.Join(tmp, platformSuffix(p)))
		if err != nil {
			return v1.Hash{}, err
		}
		img, err := imagebuild.Build(imagebuild.Spec{
			Platform: p, Created: created, Files: files,
			Config: imagebuild.Config{
				Entrypoint: f.entrypoint, Cmd: f.cmd, Env: f.env, User: f.user, WorkingDir: f.workdir,
				Labels: f.labels, ExposedPorts: f.ports,
			},
		})
		if err != nil {
			return v1.Hash{}, err
		}
		imgs = append(imgs, img)
	}
	if len(imgs) == 1 {
		if err := imagebuild.WriteImageArchive(f.output, f.name, imgs[0]); err != nil {
			return v1.Hash{}, err
		}
		return imgs[0].Digest()
	}
	idx, err := imagebuild.Index(f.labels, imgs...)
	if err != nil {
		return v1.Hash{}, err
	}
	if err := imagebuild.WriteIndexArchive(f.output, f.name, idx); err != nil {
		return v1.Hash{}, err
	}
	return idx.Digest()
}

// imageFiles are the --binary files and the --go-package binaries built for p into dir.
func imageFiles(ctx context.Context, f imageFlags, p v1.Platform, dir string) ([]imagebuild.File, error) {
	var files []imagebuild.File
	for _, b := range f.binaries {
		src, dst, err := splitMapping("--binary", b)
		if err != nil {
			return nil, err
		}
		files = append(files, imagebuild.File{Path: dst, Source: src})
	}
	var pkgs []imagebuild.GoPackage
	var dsts []string
	for i, g := range f.goPackages {
		pkg, dst, err := splitMapping("--go-package", g)
		if err != nil {
			return nil, err
		}
		pkgs = append(pkgs, imagebuild.GoPackage{Package: pkg, Name: fmt.Sprintf("%d-%s", i, filepath.Base(dst))})
		dsts = append(dsts, dst)
	}
	if len(pkgs) == 0 {
		return files, nil
	}
	bins, err := imagebuild.GoBuild{Dir: f.goDir, LDFlags: f.ldflags, Tags: f.tags}.Build(ctx, p, dir, pkgs...)
	if err != nil {
		return nil, err
	}
	for i, bin := range bins {
		files = append(files, imagebuild.File{Path: dsts[i], Source: bin})
	}
	return files, nil
}

func splitMapping(flag, s string) (string, string, error) {
	from, to, ok := strings.Cut(s, "=")
	if !ok || from == "" || !strings.HasPrefix(to, "/") {
		return "", "", fmt.Errorf("%s %q: want SOURCE=/path/in/image", flag, s)
	}
	return from, to, nil
}

// imageCreated is SOURCE_DATE_EPOCH, else the commit time of the git checkout holding dir.
func imageCreated(ctx context.Context, dir string) (time.Time, error) {
	if v := os.Getenv("SOURCE_DATE_EPOCH"); v != "" {
		return created(time.Time{})
	}
	src, err := gitSource(ctx, dir)
	if err != nil {
		return time.Time{}, fmt.Errorf("no SOURCE_DATE_EPOCH and no commit time: %w", err)
	}
	return src.Created, nil
}
