package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// source is what the labels of an image built from a git checkout say about it.
type source struct {
	// Root is the top-level directory of the checkout.
	Root string
	// Revision is the commit.
	Revision string
	// Created is SOURCE_DATE_EPOCH when set, else the commit time.
	Created time.Time
	// Version is `git describe` of the newest v* tag, or a Go pseudo-version
	// (v0.0.0-<commit time>-<12 hex>) without one; "-dirty" when tracked files changed.
	Version string
}

func gitSource(ctx context.Context, dir string) (source, error) {
	var s source
	var err error
	if s.Root, err = git(ctx, dir, "rev-parse", "--show-toplevel"); err != nil {
		return s, err
	}
	if s.Revision, err = git(ctx, dir, "rev-parse", "HEAD"); err != nil {
		return s, err
	}
	epoch, err := git(ctx, dir, "log", "-1", "--format=%ct", "HEAD")
	if err != nil {
		return s, err
	}
	commitTime, err := parseEpoch(epoch)
	if err != nil {
		return s, fmt.Errorf("commit time %q: %w", epoch, err)
	}
	if s.Created, err = created(commitTime); err != nil {
		return s, err
	}
	status, err := git(ctx, dir, "status", "--porcelain", "--untracked-files=no")
	if err != nil {
		return s, err
	}
	dirty := ""
	if status != "" {
		dirty = "-dirty"
	}
	if described, err := git(ctx, dir, "describe", "--tags", "--match", "v[0-9]*", "HEAD"); err == nil {
		s.Version = described + dirty
	} else {
		s.Version = fmt.Sprintf("v0.0.0-%s-%s%s", commitTime.Format("20060102150405"), s.Revision[:12], dirty)
	}
	return s, nil
}

// created is SOURCE_DATE_EPOCH when set, else fallback.
func created(fallback time.Time) (time.Time, error) {
	v, ok := os.LookupEnv("SOURCE_DATE_EPOCH")
	if !ok || v == "" {
		return fallback, nil
	}
	t, err := parseEpoch(v)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", v, err)
	}
	return t, nil
}

func parseEpoch(s string) (time.Time, error) {
	sec, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(sec, 0).UTC(), nil
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

// goModuleInfo is a module's version and the time of that version, from the go.mod of dir.
func goModuleInfo(ctx context.Context, dir, module string) (string, time.Time, error) {
	cmd := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Version}} {{.Time.Unix}}", module)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off")
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return "", time.Time{}, fmt.Errorf("go list -m %s: %w: %s", module, err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", time.Time{}, err
	}
	fields := strings.Fields(string(out))
	if len(fields) != 2 {
		return "", time.Time{}, fmt.Errorf("go list -m %s: unexpected output %q", module, out)
	}
	t, err := parseEpoch(fields[1])
	return fields[0], t, err
}
