package node

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Images are the images of one run, built from this checkout by hack/images (the builder
// of `make images`) for this machine's platform.
type Images struct {
	// Etcdaas is the etcdaas image (etcdaas-apiserver, etcdaas-controller).
	Etcdaas string
	// Etcd is the etcd image (etcd, etcdctl, etcdutl) built from the pinned etcd module.
	Etcd string
	// Archives are the tarballs to import into containerd.
	Archives []string
}

// BuildImages builds the pause, CoreDNS, etcdaas and etcd images into dir with the
// project's image builder and returns their names and archives.
func BuildImages(ctx context.Context, repoRoot, dir string, tools map[string]string) (*Images, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	builder := filepath.Join(dir, "images-builder")
	if err := goCommand(ctx, repoRoot, "build", "-o", builder, "./hack/images"); err != nil {
		return nil, err
	}
	platform := "linux/" + runtime.GOARCH
	pause := filepath.Join(dir, "pause.tar")
	coredns := filepath.Join(dir, "coredns.tar")
	steps := [][]string{
		{"image", "--name", PauseImage, "--platform", platform, "--go-dir", repoRoot,
			"--go-package", "./test/cluster/pause=/pause", "--entrypoint", "/pause", "--output", pause},
		{"image", "--name", CoreDNSImage, "--platform", platform,
			"--binary", tools[CoreDNS] + "=/coredns", "--entrypoint", "/coredns", "--port", "1053/udp", "--port", "1053/tcp", "--output", coredns},
		{"project", "--platform", platform, "--output", filepath.Join(dir, "project")},
	}
	var project string
	for _, args := range steps {
		cmd := exec.CommandContext(ctx, builder, args...)
		cmd.Dir = repoRoot
		out, err := cmd.CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("images %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		if args[0] == "project" {
			project = string(out)
		}
	}
	imgs := &Images{Archives: []string{pause, coredns}}
	archives, err := filepath.Glob(filepath.Join(dir, "project", "*-linux-"+runtime.GOARCH+".tar"))
	if err != nil {
		return nil, err
	}
	imgs.Archives = append(imgs.Archives, archives...)
	for _, field := range strings.Fields(project) {
		ref, _, _ := strings.Cut(field, "@")
		switch {
		case strings.HasPrefix(ref, "ghcr.io/etcdaas/etcdaas:"):
			imgs.Etcdaas = ref
		case strings.HasPrefix(ref, "ghcr.io/etcdaas/etcd:"):
			imgs.Etcd = ref
		}
	}
	if imgs.Etcdaas == "" || imgs.Etcd == "" || len(archives) != 2 {
		return nil, fmt.Errorf("hack/images project: expected the etcdaas and etcd images and their %s archives, got %v and:\n%s", platform, archives, project)
	}
	return imgs, nil
}

func goCommand(ctx context.Context, dir string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// BuildPreviousEtcdImage builds the etcd image of the previous patch release
// (hack/tools/etcd-previous, the etcd server only) with the project's image builder, imports
// it into the node's containerd and returns its name, in the repository of Images.Etcd. It is
// built on demand, by the scenario that upgrades from it, outside the node's startup.
func (c *Cluster) BuildPreviousEtcdImage(ctx context.Context) (string, error) {
	dir := c.path("images")
	builder := filepath.Join(dir, "images-builder")
	out := filepath.Join(dir, "etcd-previous")
	cmd := exec.CommandContext(ctx, builder, "project", "--platform", "linux/"+runtime.GOARCH, "--only", "etcd-previous", "--output", out)
	cmd.Dir = c.RepoRoot
	printed, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("images project --only etcd-previous: %v\n%s", err, printed)
	}
	fields := strings.Fields(string(printed))
	if len(fields) == 0 {
		return "", fmt.Errorf("images project --only etcd-previous printed nothing")
	}
	ref, _, _ := strings.Cut(fields[0], "@")
	repo, _, _ := strings.Cut(c.Images.Etcd, ":")
	if !strings.HasPrefix(ref, repo+":") || ref == c.Images.Etcd {
		return "", fmt.Errorf("images project --only etcd-previous built %q, want another tag of %s:\n%s", ref, repo, printed)
	}
	archive := filepath.Join(out, "etcd-previous-linux-"+runtime.GOARCH+".tar")
	if err := c.ImportImages(ctx, archive); err != nil {
		return "", err
	}
	return ref, nil
}

// BuildBrokenEtcdImage builds an image named tag in the repository of Images.Etcd that holds
// no etcd at all (only the pause binary), imports it into the node's containerd and returns
// its name: a member pod of it cannot start its etcd container ("etcd" is not found), as
// with a broken release image. No registry is ever asked for it.
func (c *Cluster) BuildBrokenEtcdImage(ctx context.Context, tag string) (string, error) {
	dir := c.path("images")
	repo, _, _ := strings.Cut(c.Images.Etcd, ":")
	ref := repo + ":" + tag
	if ref == c.Images.Etcd {
		return "", fmt.Errorf("the broken etcd image would replace the working %s", ref)
	}
	archive := filepath.Join(dir, "etcd-broken-"+tag+".tar")
	cmd := exec.CommandContext(ctx, filepath.Join(dir, "images-builder"), "image", "--name", ref, "--platform", "linux/"+runtime.GOARCH,
		"--go-dir", c.RepoRoot, "--go-package", "./test/cluster/pause=/pause", "--entrypoint", "/pause", "--output", archive)
	cmd.Dir = c.RepoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("images image --name %s: %v\n%s", ref, err, out)
	}
	if err := c.ImportImages(ctx, archive); err != nil {
		return "", err
	}
	return ref, nil
}
