package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/etcdaas/etcdaas/hack/images/imagebuild"
)

// gitRepo makes a repository with a hello module committed at commitTime.
func gitRepo(t *testing.T, commitTime time.Time) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"go.mod":            "module example.com/hello\n\ngo 1.22\n",
		"cmd/hello/main.go": "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello\") }\n",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	runGit(t, dir, commitTime, "init", "-q")
	runGit(t, dir, commitTime, "add", ".")
	runGit(t, dir, commitTime, "commit", "-q", "-m", "hello")
	return dir
}

func runGit(t *testing.T, dir string, at time.Time, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"}, args...)...)
	cmd.Dir = dir
	date := at.Format(time.RFC3339)
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_DATE="+date, "GIT_COMMITTER_DATE="+date, "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestGitSource(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "")
	at := time.Date(2026, 10, 2, 3, 4, 5, 0, time.UTC)
	dir := gitRepo(t, at)
	head := runGit(t, dir, at, "rev-parse", "HEAD")
	ctx := context.Background()

	src, err := gitSource(ctx, filepath.Join(dir, "cmd"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "v0.0.0-20261002030405-" + head[:12]; src.Version != want || src.Revision != head || !src.Created.Equal(at) {
		t.Fatalf("untagged: %+v, want version %s, created %s", src, want, at)
	}
	if resolved, _ := filepath.EvalSymlinks(dir); src.Root != dir && src.Root != resolved {
		t.Errorf("root %s, want %s", src.Root, dir)
	}

	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/hello\n\ngo 1.23\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if src, err = gitSource(ctx, dir); err != nil || !strings.HasSuffix(src.Version, "-dirty") {
		t.Fatalf("a changed tracked file: version %q (%v)", src.Version, err)
	}
	runGit(t, dir, at, "checkout", "-q", "go.mod")
	if err := os.WriteFile(filepath.Join(dir, "untracked"), nil, 0o644); err != nil {
		t.Fatal(err)
	}

	runGit(t, dir, at, "tag", "-a", "-m", "v1.2.0", "v1.2.0")
	if src, err = gitSource(ctx, dir); err != nil || src.Version != "v1.2.0" {
		t.Fatalf("tagged: version %q (%v)", src.Version, err)
	}
	next := at.Add(time.Hour)
	runGit(t, dir, next, "commit", "-q", "--allow-empty", "-m", "next")
	if src, err = gitSource(ctx, dir); err != nil || !regexp.MustCompile(`^v1\.2\.0-1-g[0-9a-f]{7,}$`).MatchString(src.Version) || !src.Created.Equal(next) {
		t.Fatalf("after the tag: %+v (%v)", src, err)
	}

	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	if src, err = gitSource(ctx, dir); err != nil || !src.Created.Equal(time.Unix(1700000000, 0)) {
		t.Fatalf("SOURCE_DATE_EPOCH: %+v (%v)", src, err)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "yesterday")
	if _, err = gitSource(ctx, dir); err == nil {
		t.Fatal("an invalid SOURCE_DATE_EPOCH is accepted")
	}
	if _, err = gitSource(ctx, t.TempDir()); err == nil {
		t.Fatal("a directory outside git has a source")
	}
}

// `images image` builds the same archive twice from one commit, for one platform from
// --binary and for two from --go-package.
func TestImageCommand(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "")
	at := time.Date(2026, 10, 2, 3, 4, 5, 0, time.UTC)
	repo := gitRepo(t, at)
	ctx := context.Background()
	build := func(f imageFlags) (v1.Hash, [32]byte) {
		t.Helper()
		f.output = filepath.Join(t.TempDir(), "out.tar")
		d, err := buildImage(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(f.output)
		if err != nil {
			t.Fatal(err)
		}
		named, err := imagebuild.ReadNames(f.output)
		if err != nil || len(named) != 1 || named[0].Name != f.name || named[0].Descriptor.Digest != d {
			t.Fatalf("archive names %+v (%v), want %s@%s", named, err, f.name, d)
		}
		return d, sha256.Sum256(data)
	}
	multi := imageFlags{
		name: "registry.example/hello:v1", goDir: repo, goPackages: []string{"./cmd/hello=/hello"},
		platforms: []string{"linux/amd64", "linux/arm64"}, entrypoint: []string{"/hello"},
		labels: map[string]string{imagebuild.LabelVersion: "v1"},
	}
	d1, sum1 := build(multi)
	d2, sum2 := build(multi)
	if d1 != d2 || sum1 != sum2 {
		t.Fatalf("two builds of one commit: %s, %s", d1, d2)
	}

	bin := filepath.Join(t.TempDir(), "hello")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/hello")
	cmd.Dir, cmd.Env = repo, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	single := imageFlags{name: "registry.example/hello:v1", goDir: repo, binaries: []string{bin + "=/hello"}, platforms: []string{"linux/amd64"}}
	s1, _ := build(single)
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	if s2, _ := build(single); s2 == s1 {
		t.Fatal("SOURCE_DATE_EPOCH does not change the image")
	}

	for name, f := range map[string]imageFlags{
		"no name":            {output: "x.tar", binaries: single.binaries, platforms: single.platforms},
		"no files":           {name: "a/b:c", output: "x.tar", platforms: single.platforms},
		"binary, two arches": {name: "a/b:c", output: "x.tar", binaries: single.binaries, platforms: multi.platforms},
		"bad mapping":        {name: "a/b:c", output: "x.tar", binaries: []string{bin + ":/hello"}, platforms: single.platforms},
		"relative target":    {name: "a/b:c", output: "x.tar", binaries: []string{bin + "=hello"}, platforms: single.platforms},
		"bad platform":       {name: "a/b:c", output: "x.tar", binaries: single.binaries, platforms: []string{"linux"}},
	} {
		if _, err := buildImage(ctx, f); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// The etcdaas image of this checkout, built twice, has one digest; it holds the two static
// binaries, stamped with the version, and the labels name the commit.
func TestProjectImageReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("builds etcdaas-apiserver and etcdaas-controller twice")
	}
	ctx := context.Background()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	src, err := gitSource(ctx, wd)
	if err != nil {
		t.Fatal(err)
	}
	pi := etcdaasImage(src, DefaultRepository, "test")
	amd64 := []v1.Platform{{OS: "linux", Architecture: "amd64"}}
	first, err := buildProjectImage(ctx, pi, amd64, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	second, err := buildProjectImage(ctx, pi, amd64, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if first.Index != second.Index || first.Platforms[0].Digest != second.Platforms[0].Digest {
		t.Fatalf("two builds of one commit: %+v, %+v", first, second)
	}

	named, err := imagebuild.ReadNames(first.Archive)
	if err != nil || len(named) != 1 || named[0].Name != DefaultRepository+":test" || named[0].Descriptor.Digest != first.Index {
		t.Fatalf("index archive names %+v (%v)", named, err)
	}
	cf, err := imageFromArchive(t, first.Platforms[0].Archive).ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if l := cf.Config.Labels; l[imagebuild.LabelRevision] != src.Revision || l[imagebuild.LabelVersion] != src.Version ||
		l[imagebuild.LabelSource] != sourceURL || l[imagebuild.LabelCreated] != src.Created.Format(time.RFC3339) || cf.Config.User != "65532:65532" {
		t.Errorf("config %+v", cf.Config)
	}
	files := archiveImageFiles(t, first.Platforms[0].Archive)
	for _, bin := range []string{"etcdaas-apiserver", "etcdaas-controller"} {
		p, ok := files[bin]
		if !ok {
			t.Fatalf("no /%s in the image (files: %v)", bin, files)
		}
		info, err := buildinfo.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		settings := map[string]string{}
		for _, s := range info.Settings {
			settings[s.Key] = s.Value
		}
		if settings["CGO_ENABLED"] != "0" || settings["-trimpath"] != "true" || settings["GOOS"] != "linux" || settings["GOARCH"] != "amd64" || settings["vcs"] != "" {
			t.Errorf("/%s build settings %v", bin, settings)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		// etcdaas-apiserver reports it in /version (pkg/apiserver.Version).
		if bin == "etcdaas-apiserver" && !bytes.Contains(data, []byte(src.Version)) {
			t.Errorf("/%s does not hold its version %s", bin, src.Version)
		}
	}
}

// archiveImageFiles extracts the regular files of the single image in a single-platform
// archive's docker manifest.json layers into a directory and maps their base names to paths.
func archiveImageFiles(t *testing.T, archive string) map[string]string {
	t.Helper()
	img := imageFromArchive(t, archive)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := map[string]string{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			hdr, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if hdr.Typeflag != tar.TypeReg {
				continue
			}
			p := filepath.Join(dir, filepath.Base(hdr.Name))
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, data, 0o755); err != nil {
				t.Fatal(err)
			}
			out[filepath.Base(hdr.Name)] = p
		}
		rc.Close()
	}
	return out
}

func imageFromArchive(t *testing.T, archive string) v1.Image {
	t.Helper()
	img, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// The project command refuses unknown images and platforms before building anything.
func TestProjectCommandErrors(t *testing.T) {
	out := t.TempDir()
	for _, args := range [][]string{
		{"--only", "etcdaas,bogus", "--output", out},
		{"--platform", "linux", "--output", out},
		{"--platform", "", "--output", out},
		{"--output", out, "extra-argument"},
	} {
		cmd := projectCommand()
		cmd.SetArgs(args)
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		if err := cmd.ExecuteContext(context.Background()); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
	if entries, err := os.ReadDir(out); err != nil || len(entries) != 0 {
		t.Fatalf("the output directory after errors: %v (%v)", entries, err)
	}
}

// The previous etcd image is the same etcd minor as the current one, an earlier patch: the
// cluster tier rolls instances from it to the current one, which the upgrade rules allow.
func TestEtcdPreviousIsAnEarlierPatch(t *testing.T) {
	ctx := context.Background()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	src, err := gitSource(ctx, wd)
	if err != nil {
		t.Fatal(err)
	}
	current, err := etcdImage(ctx, src.Root, DefaultEtcdRepository)
	if err != nil {
		t.Fatal(err)
	}
	previous, err := etcdPreviousImage(ctx, src.Root, DefaultEtcdRepository)
	if err != nil {
		t.Fatal(err)
	}
	cur := strings.TrimPrefix(current.Ref, DefaultEtcdRepository+":v")
	prev := strings.TrimPrefix(previous.Ref, DefaultEtcdRepository+":v")
	cp, pp := strings.Split(cur, "."), strings.Split(prev, ".")
	if len(cp) != 3 || len(pp) != 3 || cp[0] != pp[0] || cp[1] != pp[1] {
		t.Fatalf("current %s and previous %s are not releases of one minor", current.Ref, previous.Ref)
	}
	cpatch, err1 := strconv.Atoi(cp[2])
	ppatch, err2 := strconv.Atoi(pp[2])
	if err1 != nil || err2 != nil || ppatch >= cpatch {
		t.Fatalf("previous %s is not an earlier patch than %s", previous.Ref, current.Ref)
	}
	if previous.Short != "etcd-previous" || current.Short != "etcd" {
		t.Fatalf("archive names %q, %q", current.Short, previous.Short)
	}
}
