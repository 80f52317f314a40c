package imagebuild

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

var (
	amd64   = v1.Platform{OS: "linux", Architecture: "amd64"}
	arm64   = v1.Platform{OS: "linux", Architecture: "arm64"}
	created = time.Date(2026, 11, 1, 12, 30, 0, 0, time.UTC)
)

const helloMain = `package main

import (
	"fmt"
	"os"
)

func main() { fmt.Println("hello from", os.Getuid()) }
`

// helloModule writes a module with one main package (./cmd/hello) and returns its directory.
func helloModule(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "cmd", "hello"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/hello\n\ngo 1.22\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cmd", "hello", "main.go"), []byte(helloMain), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func buildHello(t *testing.T, module string, p v1.Platform) string {
	t.Helper()
	bins, err := GoBuild{Dir: module}.Build(context.Background(), p, t.TempDir(), GoPackage{Package: "./cmd/hello", Name: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	return bins[0]
}

func helloSpec(p v1.Platform, bin string) Spec {
	return Spec{
		Platform: p, Created: created,
		Files:       []File{{Path: "/usr/local/bin/hello", Source: bin}},
		Directories: []Directory{{Path: "/var/lib/hello", Mode: 0o700, UID: Nonroot, GID: Nonroot}},
		Config: Config{
			Entrypoint: []string{"/usr/local/bin/hello"}, WorkingDir: "/var/lib/hello",
			Labels: map[string]string{LabelVersion: "v1.2.3"}, ExposedPorts: []string{"8080/tcp"},
		},
	}
}

func mustBuild(t *testing.T, spec Spec) v1.Image {
	t.Helper()
	img, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("invalid image: %v", err)
	}
	return img
}

func digest(t *testing.T, d interface{ Digest() (v1.Hash, error) }) v1.Hash {
	t.Helper()
	h, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func fileSHA(t *testing.T, file string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// Two builds from the same sources, in other directories, at other times, with other file
// modes on the build machine, give the same image and index digests and byte-identical
// archives; the creation time and the content change them.
func TestReproducible(t *testing.T) {
	module := helloModule(t)
	build := func(touch time.Time, perm os.FileMode) (v1.Image, v1.Image, v1.ImageIndex, string, string) {
		a, b := buildHello(t, module, amd64), buildHello(t, module, arm64)
		for _, bin := range []string{a, b} {
			if err := os.Chtimes(bin, touch, touch); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(bin, perm); err != nil {
				t.Fatal(err)
			}
		}
		imgA, imgB := mustBuild(t, helloSpec(amd64, a)), mustBuild(t, helloSpec(arm64, b))
		idx, err := Index(map[string]string{LabelVersion: "v1.2.3"}, imgA, imgB)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		indexArchive, imageArchive := filepath.Join(dir, "index.tar"), filepath.Join(dir, "amd64.tar")
		if err := WriteIndexArchive(indexArchive, "registry.example/hello:v1", idx); err != nil {
			t.Fatal(err)
		}
		if err := WriteImageArchive(imageArchive, "registry.example/hello:v1", imgA); err != nil {
			t.Fatal(err)
		}
		return imgA, imgB, idx, indexArchive, imageArchive
	}
	a1, b1, idx1, ia1, pa1 := build(time.Now(), 0o755)
	a2, b2, idx2, ia2, pa2 := build(time.Now().Add(-48*time.Hour), 0o700)
	if digest(t, a1) != digest(t, a2) || digest(t, b1) != digest(t, b2) {
		t.Fatalf("per-platform digests differ: %s %s, %s %s", digest(t, a1), digest(t, a2), digest(t, b1), digest(t, b2))
	}
	if digest(t, idx1) != digest(t, idx2) {
		t.Fatalf("index digests differ: %s, %s", digest(t, idx1), digest(t, idx2))
	}
	if fileSHA(t, ia1) != fileSHA(t, ia2) || fileSHA(t, pa1) != fileSHA(t, pa2) {
		t.Fatal("archives of the same images differ")
	}
	if digest(t, a1) == digest(t, b1) {
		t.Fatal("amd64 and arm64 images have one digest")
	}

	later := helloSpec(amd64, buildHello(t, module, amd64))
	later.Created = created.Add(time.Second)
	if digest(t, mustBuild(t, later)) == digest(t, a1) {
		t.Fatal("another creation time gives the same digest")
	}
	other := filepath.Join(t.TempDir(), "hello")
	if err := os.WriteFile(other, []byte("#!/not/a/go/binary\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if digest(t, mustBuild(t, helloSpec(amd64, other))) == digest(t, a1) {
		t.Fatal("other content gives the same digest")
	}
}

type tarEntry struct {
	hdr  tar.Header
	data []byte
}

// layerEntries reads a layer's tar, in order.
func layerEntries(t *testing.T, l v1.Layer) []tarEntry {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var out []tarEntry
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tarEntry{hdr: *hdr, data: data})
	}
}

// The image holds exactly the base files and the spec's files, sorted, root-owned except
// where asked, every mtime the creation time; the config runs as nonroot with the labels.
func TestImageContents(t *testing.T) {
	bin := buildHello(t, helloModule(t), amd64)
	img := mustBuild(t, helloSpec(amd64, bin))
	byName := checkLayerEntries(t, img)
	checkEntryOwnersAndData(t, byName, bin)
	checkImageConfig(t, img)
	// The binary as the image holds it runs: static, no loader or libc needed.
	checkBinaryRuns(t, byName["usr/local/bin/hello"].data)
}

// checkLayerEntries checks that img has a base and a files layer whose entries are sorted,
// carry the creation time and no owner names, and are exactly the expected files; it
// returns the entries by name.
func checkLayerEntries(t *testing.T, img v1.Image) map[string]tarEntry {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 2 {
		t.Fatalf("%d layers, want base and files", len(layers))
	}
	for _, l := range layers {
		if mt, _ := l.MediaType(); mt != types.OCILayer {
			t.Errorf("layer media type %s", mt)
		}
	}
	var names []string
	byName := map[string]tarEntry{}
	for i, l := range layers {
		var layerNames []string
		for _, e := range layerEntries(t, l) {
			layerNames = append(layerNames, e.hdr.Name)
			names = append(names, e.hdr.Name)
			byName[e.hdr.Name] = e
			if !e.hdr.ModTime.Equal(created) {
				t.Errorf("%s: mtime %s, want %s", e.hdr.Name, e.hdr.ModTime, created)
			}
			if e.hdr.Uname != "" || e.hdr.Gname != "" {
				t.Errorf("%s: owner names %q %q", e.hdr.Name, e.hdr.Uname, e.hdr.Gname)
			}
		}
		if !sort.StringsAreSorted(layerNames) {
			t.Errorf("layer %d entries not sorted: %v", i, layerNames)
		}
	}
	want := []string{
		"etc/", "etc/group", "etc/nsswitch.conf", "etc/passwd", "home/", "home/nonroot/", "root/", "tmp/",
		"usr/", "usr/local/", "usr/local/bin/", "usr/local/bin/hello", "var/", "var/lib/", "var/lib/hello/",
	}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("entries\n got %v\nwant %v", names, want)
	}
	return byName
}

// checkEntryOwnersAndData checks the modes and owners of the image's files, its
// /etc/passwd, and that its binary is bin.
func checkEntryOwnersAndData(t *testing.T, byName map[string]tarEntry, bin string) {
	t.Helper()
	for name, w := range map[string]struct {
		mode     int64
		uid, gid int
	}{
		"usr/local/bin/hello": {0o755, 0, 0}, "var/lib/hello/": {0o700, Nonroot, Nonroot},
		"tmp/": {0o1777, 0, 0}, "home/nonroot/": {0o700, Nonroot, Nonroot}, "etc/passwd": {0o644, 0, 0},
		"usr/local/": {0o755, 0, 0},
	} {
		h := byName[name].hdr
		if h.Mode != w.mode || h.Uid != w.uid || h.Gid != w.gid {
			t.Errorf("%s: mode %o uid %d gid %d, want %o %d %d", name, h.Mode, h.Uid, h.Gid, w.mode, w.uid, w.gid)
		}
	}
	if !strings.Contains(string(byName["etc/passwd"].data), "nonroot:x:65532:65532:") {
		t.Errorf("/etc/passwd: %q", byName["etc/passwd"].data)
	}
	binData, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(byName["usr/local/bin/hello"].data) != sha256.Sum256(binData) {
		t.Error("the binary in the image differs from the one built")
	}
}

// checkImageConfig checks that the image runs as nonroot with the spec's entrypoint,
// environment, ports and labels, and that its manifest is OCI.
func checkImageConfig(t *testing.T, img v1.Image) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if c.User != "65532:65532" || c.WorkingDir != "/var/lib/hello" || len(c.Entrypoint) != 1 || c.Entrypoint[0] != "/usr/local/bin/hello" {
		t.Errorf("config %+v", c)
	}
	if len(c.Env) != 1 || c.Env[0] != DefaultPath {
		t.Errorf("env %v", c.Env)
	}
	if _, ok := c.ExposedPorts["8080/tcp"]; !ok {
		t.Errorf("exposed ports %v", c.ExposedPorts)
	}
	if c.Labels[LabelVersion] != "v1.2.3" || c.Labels[LabelCreated] != "2026-11-01T12:30:00Z" {
		t.Errorf("labels %v", c.Labels)
	}
	if !cf.Created.Time.Equal(created) || cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("config file created %s platform %s/%s", cf.Created, cf.OS, cf.Architecture)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON || m.Annotations[LabelVersion] != "v1.2.3" {
		t.Errorf("manifest media types %s %s, annotations %v", m.MediaType, m.Config.MediaType, m.Annotations)
	}
}

// checkBinaryRuns runs binary, on linux/amd64, and checks it is statically linked.
func checkBinaryRuns(t *testing.T, binary []byte) {
	t.Helper()
	if runtime.GOOS == "linux" && runtime.GOARCH == "amd64" {
		extracted := filepath.Join(t.TempDir(), "hello")
		if err := os.WriteFile(extracted, binary, 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(extracted).CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "hello from") {
			t.Errorf("running the image's binary: %v: %s", err, out)
		}
		if file, err := exec.LookPath("file"); err == nil {
			desc, _ := exec.Command(file, extracted).CombinedOutput()
			if !strings.Contains(string(desc), "statically linked") {
				t.Errorf("not static: %s", desc)
			}
		}
	}
}

// untar extracts an archive into a new directory.
func untar(t *testing.T, file string) string {
	t.Helper()
	dir := t.TempDir()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return dir
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(hdr.Name))
		if !strings.HasPrefix(p, dir+string(filepath.Separator)) {
			t.Fatalf("archive entry %q leaves the directory", hdr.Name)
		}
		if hdr.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// The multi-platform archive is an OCI image layout whose index.json names the index the way
// containerd reads it; go-containerregistry's layout package reads it back unchanged.
func TestIndexArchiveReadBack(t *testing.T) {
	module := helloModule(t)
	imgA, imgB := mustBuild(t, helloSpec(amd64, buildHello(t, module, amd64))), mustBuild(t, helloSpec(arm64, buildHello(t, module, arm64)))
	idx, err := Index(map[string]string{LabelVersion: "v1.2.3"}, imgA, imgB)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "hello.oci.tar")
	if err := WriteIndexArchive(file, "registry.example/team/hello:v1", idx); err != nil {
		t.Fatal(err)
	}

	named, err := ReadNames(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(named) != 1 || named[0].Name != "registry.example/team/hello:v1" || named[0].Descriptor.Digest != digest(t, idx) ||
		named[0].Descriptor.MediaType != types.OCIImageIndex || named[0].Descriptor.Annotations[AnnotationRefName] != "v1" {
		t.Fatalf("index.json names %+v", named)
	}

	dir := untar(t, file)
	if _, err := os.Stat(filepath.Join(dir, "manifest.json")); !os.IsNotExist(err) {
		t.Errorf("a multi-platform archive has a docker manifest.json (one tag for two images): %v", err)
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	read, err := top.ImageIndex(digest(t, idx))
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(read); err != nil {
		t.Fatalf("index read back: %v", err)
	}
	im, err := read.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]v1.Hash{}
	for _, d := range im.Manifests {
		got[d.Platform.String()] = d.Digest
	}
	if len(got) != 2 || got["linux/amd64"] != digest(t, imgA) || got["linux/arm64"] != digest(t, imgB) {
		t.Fatalf("platforms %v", got)
	}
	if im.Annotations[LabelVersion] != "v1.2.3" {
		t.Errorf("index annotations %v", im.Annotations)
	}
}

// The single-platform archive reads back both as an OCI layout (same manifest digest as in
// the index) and as a docker archive through its manifest.json (same config and layers).
func TestImageArchiveReadBack(t *testing.T) {
	img := mustBuild(t, helloSpec(arm64, buildHello(t, helloModule(t), arm64)))
	file := filepath.Join(t.TempDir(), "hello-linux-arm64.tar")
	const ref = "registry.example/hello:v1"
	if err := WriteImageArchive(file, ref, img); err != nil {
		t.Fatal(err)
	}

	named, err := ReadNames(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(named) != 1 || named[0].Name != ref || named[0].Descriptor.Digest != digest(t, img) ||
		named[0].Descriptor.Platform == nil || named[0].Descriptor.Platform.String() != "linux/arm64" {
		t.Fatalf("index.json names %+v", named)
	}
	p, err := layout.FromPath(untar(t, file))
	if err != nil {
		t.Fatal(err)
	}
	fromLayout, err := p.Image(digest(t, img))
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(fromLayout); err != nil {
		t.Fatalf("OCI layout image: %v", err)
	}

	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	fromDocker, err := tarball.ImageFromPath(file, &tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(fromDocker); err != nil {
		t.Fatalf("docker archive image: %v", err)
	}
	wantConfig, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	if gotConfig, err := fromDocker.ConfigName(); err != nil || gotConfig != wantConfig {
		t.Fatalf("docker archive config %s (%v), want %s", gotConfig, err, wantConfig)
	}
	wantLayers, _ := img.Layers()
	gotLayers, err := fromDocker.Layers()
	if err != nil || len(gotLayers) != len(wantLayers) {
		t.Fatalf("docker archive layers %d (%v), want %d", len(gotLayers), err, len(wantLayers))
	}
	for i := range wantLayers {
		if digest(t, gotLayers[i]) != digest(t, wantLayers[i]) {
			t.Errorf("layer %d differs", i)
		}
	}
	// Another tag is not in the archive.
	other, _ := name.NewTag("registry.example/hello:v2")
	if _, err := tarball.ImageFromPath(file, &other); err == nil {
		t.Error("the archive has a tag it was not written with")
	}
}

func TestSpecErrors(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(bin, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, spec := range map[string]Spec{
		"relative path":  {Platform: amd64, Created: created, Files: []File{{Path: "bin/x", Source: bin}}},
		"unclean path":   {Platform: amd64, Created: created, Files: []File{{Path: "/bin/../x", Source: bin}}},
		"root":           {Platform: amd64, Created: created, Files: []File{{Path: "/", Source: bin}}},
		"twice":          {Platform: amd64, Created: created, Files: []File{{Path: "/x", Source: bin}, {Path: "/x", Source: bin}}},
		"file and dir":   {Platform: amd64, Created: created, Files: []File{{Path: "/x", Source: bin}}, Directories: []Directory{{Path: "/x"}}},
		"missing source": {Platform: amd64, Created: created, Files: []File{{Path: "/x", Source: bin + ".missing"}}},
		"dir source":     {Platform: amd64, Created: created, Files: []File{{Path: "/x", Source: filepath.Dir(bin)}}},
		"no platform":    {Created: created, Files: []File{{Path: "/x", Source: bin}}},
		"no time":        {Platform: amd64, Files: []File{{Path: "/x", Source: bin}}},
	} {
		if _, err := Build(spec); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	img := mustBuild(t, Spec{Platform: amd64, Created: created, Files: []File{{Path: "/x", Source: bin}}})
	if _, err := Index(nil, img, img); err == nil {
		t.Error("an index with two images of one platform")
	}
	noPlatform, err := mutate.ConfigFile(img, &v1.ConfigFile{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Index(nil, noPlatform); err == nil {
		t.Error("an index entry without a platform")
	}
	if err := WriteImageArchive(filepath.Join(t.TempDir(), "x.tar"), "Not A Name", img); err == nil {
		t.Error("an archive with an invalid name")
	}
	for _, s := range []string{"linux", "", "linux/"} {
		if _, err := ParsePlatform(s); err == nil {
			t.Errorf("platform %q parsed", s)
		}
	}
}

func TestGoBuildErrors(t *testing.T) {
	module := helloModule(t)
	if _, err := (GoBuild{Dir: module}).Build(context.Background(), amd64, t.TempDir(), GoPackage{Package: "./cmd/missing", Name: "missing"}); err == nil || !strings.Contains(err.Error(), "cmd/missing") {
		t.Errorf("missing package: %v", err)
	}
	if _, err := (GoBuild{Dir: module}).Build(context.Background(), amd64, t.TempDir(), GoPackage{Package: "./cmd/hello", Name: "a/b"}); err == nil {
		t.Error("a binary name with a slash")
	}
	if _, err := (GoBuild{Dir: module}).Build(context.Background(), v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v9"}, t.TempDir(), GoPackage{Package: "./cmd/hello", Name: "hello"}); err == nil {
		t.Error("arm64 v9")
	}
}
