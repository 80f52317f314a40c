package imagebuild

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// GoPackage is a main package to build.
type GoPackage struct {
	// Package is the import path or a ./relative package path in GoBuild.Dir.
	Package string
	// Name is the binary's file name.
	Name string
}

// GoBuild builds static Go binaries the way images need them: CGO_ENABLED=0, -trimpath,
// stripped, for a given platform, with the module information of Dir. VCS stamping is off:
// it records whether the checkout has untracked files, which would make two builds of one
// commit differ; stamp versions with LDFlags (-X) instead.
type GoBuild struct {
	// Dir is the directory go build runs in: a module (its go.mod pins the versions). go.work
	// files are ignored.
	Dir string
	// LDFlags are added to "-s -w".
	LDFlags string
	// Tags are build tags, comma separated.
	Tags string
	// Go is the go command; empty means "go" from PATH.
	Go string
}

// Build builds packages for platform into dir and returns the binaries' paths in order.
func (g GoBuild) Build(ctx context.Context, platform v1.Platform, dir string, packages ...GoPackage) ([]string, error) {
	env, err := goEnv(platform)
	if err != nil {
		return nil, err
	}
	goCmd := g.Go
	if goCmd == "" {
		goCmd = "go"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(packages))
	for _, pkg := range packages {
		if pkg.Name == "" || strings.ContainsRune(pkg.Name, '/') {
			return nil, fmt.Errorf("package %s: binary name %q: want a file name", pkg.Package, pkg.Name)
		}
		bin := filepath.Join(dir, pkg.Name)
		args := []string{"build", "-trimpath", "-ldflags", strings.TrimSpace("-s -w " + g.LDFlags), "-o", bin}
		if g.Tags != "" {
			args = append(args, "-tags", g.Tags)
		}
		cmd := exec.CommandContext(ctx, goCmd, append(args, pkg.Package)...)
		cmd.Dir, cmd.Env = g.Dir, env
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stderr, &stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("go build %s for %s: %w\n%s", pkg.Package, platform.String(), err, stderr.String())
		}
		out = append(out, bin)
	}
	return out, nil
}

// goEnv is the environment of a static build for platform. Settings that change the code
// generated (GOAMD64, GOARM64, GOARM, GOFLAGS, GOEXPERIMENT) are fixed, so that the
// environment of whoever builds does not change the digest.
func goEnv(p v1.Platform) ([]string, error) {
	env := []string{}
	for _, kv := range os.Environ() {
		switch strings.SplitN(kv, "=", 2)[0] {
		case "CGO_ENABLED", "GOOS", "GOARCH", "GOAMD64", "GOARM64", "GOARM", "GOWORK", "GOFLAGS", "GOEXPERIMENT":
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=readonly -buildvcs=false", "GOOS="+p.OS, "GOARCH="+p.Architecture)
	switch p.Architecture {
	case "amd64":
		env = append(env, "GOAMD64=v1")
	case "arm64":
		if p.Variant != "" && p.Variant != "v8" {
			return nil, fmt.Errorf("platform %s: only arm64 v8 is built", p.String())
		}
		env = append(env, "GOARM64=v8.0")
	case "arm":
		v := strings.TrimPrefix(p.Variant, "v")
		if v == "" {
			v = "7"
		}
		env = append(env, "GOARM="+v)
	}
	return env, nil
}
