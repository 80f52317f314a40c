package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/etcdaas/etcdaas/pkg/loopback"
)

var (
	snapshotOnce sync.Once
	snapshotData []byte
	snapshotErr  error
)

// testSnapshot returns a real snapshot, taken once per test binary with clientv3's
// Maintenance API from an embedded etcd on 127.0.0.1 holding 100 keys.
func testSnapshot(t *testing.T) []byte {
	t.Helper()
	snapshotOnce.Do(func() { snapshotData, snapshotErr = takeSnapshot() })
	if snapshotErr != nil {
		t.Fatalf("taking a test snapshot: %v", snapshotErr)
	}
	return snapshotData
}

func takeSnapshot() ([]byte, error) {
	dir, err := os.MkdirTemp("", "cli-snapshot-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	// Both ports at once: two lookups one after the other may return the same port.
	ports, err := loopback.FreePorts(2)
	if err != nil {
		return nil, err
	}
	peer, err := url.Parse("http://" + loopback.HostPort(ports[0]))
	if err != nil {
		return nil, err
	}
	client, err := url.Parse("http://" + loopback.HostPort(ports[1]))
	if err != nil {
		return nil, err
	}
	cfg := embed.NewConfig()
	cfg.Name = "snap"
	cfg.Dir = filepath.Join(dir, "data")
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*peer}, []url.URL{*peer}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*client}, []url.URL{*client}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("embedded etcd not ready")
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{client.String()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 100 {
		if _, err := c.Put(ctx, fmt.Sprintf("/key/%03d", i), strings.Repeat("v", 100)); err != nil {
			return nil, err
		}
	}
	rc, err := c.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// serveBytes makes the fake server stream data as the backup, in small chunks.
func serveBytes(data []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", `attachment; filename="team-my-etcd-101.db"`)
		w.WriteHeader(http.StatusOK)
		for off := 0; off < len(data); off += 8192 {
			end := min(off+8192, len(data))
			if _, err := w.Write(data[off:end]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	}
}

// expectNoFiles fails if FILE or a part file of it exist.
func expectNoFiles(t *testing.T, file string) {
	t.Helper()
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("%s exists after a failed backup (err=%v)", file, err)
	}
	expectNoPartFiles(t, file)
}

// expectNoPartFiles fails if a part file of FILE (FILE.NNN.part) exists.
func expectNoPartFiles(t *testing.T, file string) {
	t.Helper()
	if parts, err := filepath.Glob(file + ".*.part"); err != nil || len(parts) != 0 {
		t.Errorf("part files left behind: %v (err=%v)", parts, err)
	}
}

func TestBackup(t *testing.T) {
	snap := testSnapshot(t)
	if !hasChecksum(int64(len(snap))) {
		t.Fatalf("a clientv3 snapshot of %d bytes has no checksum trailer?", len(snap))
	}
	s := newFakeServer(t)
	s.add(instance("team", "my-etcd", 1))
	s.backup = serveBytes(snap)
	file := filepath.Join(t.TempDir(), "my-etcd.db")

	r := s.run(t, "backup", "my-etcd", "-o", file)
	expectCode(t, r, 0)
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, snap) {
		t.Errorf("saved %d bytes, want the %d streamed", len(got), len(snap))
	}
	expectNoPartFiles(t, file)
	if info, _ := os.Stat(file); info.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600: a snapshot holds all the data", info.Mode().Perm())
	}
	// 100 keys were put; etcdutl's status reads them back.
	if !strings.HasPrefix(r.stdout, "Snapshot of team/my-etcd saved to "+file+" (") || !strings.Contains(r.stdout, ", 100 keys, hash ") {
		t.Errorf("stdout %q", r.stdout)
	}
	// Not a terminal: no progress bar, nothing on stderr.
	if r.stderr != "" {
		t.Errorf("stderr %q", r.stderr)
	}
	reqs := s.recorded()
	if last := reqs[len(reqs)-1]; last.Method != "GET" || last.Path != "/apis/etcdaas.dev/v1beta1/namespaces/team/etcdinstances/my-etcd/backup" {
		t.Errorf("request %+v", last)
	}

	// An existing FILE is replaced by a good snapshot.
	if err := os.WriteFile(file, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = s.run(t, "backup", "my-etcd", "-o", file)
	expectCode(t, r, 0)
	if got, _ := os.ReadFile(file); !bytes.Equal(got, snap) {
		t.Error("existing file not replaced")
	}
}

func TestBackupProgressOnTerminal(t *testing.T) {
	s := newFakeServer(t)
	s.add(instance("team", "my-etcd", 1))
	s.backup = serveBytes(testSnapshot(t))
	file := filepath.Join(t.TempDir(), "my-etcd.db")
	r := runPlugin(t, "", true, "--kubeconfig", s.kubeconfig(t, "team"), "backup", "my-etcd", "-o", file)
	expectCode(t, r, 0)
	if !strings.HasPrefix(r.stderr, "\rbackup team/my-etcd [") || !strings.Contains(r.stderr, "MB/s") ||
		!strings.Contains(r.stderr, "kB") || !strings.HasSuffix(r.stderr, " done\n") {
		t.Errorf("progress %q", r.stderr)
	}
}

func TestBackupFailures(t *testing.T) {
	snap := testSnapshot(t)
	flipped := bytes.Clone(snap)
	flipped[len(flipped)/2] ^= 0xff

	for _, tc := range badSnapshotStreams(snap, flipped) {
		t.Run(tc.name, func(t *testing.T) {
			s := newFakeServer(t)
			s.add(instance("team", "my-etcd", 1))
			s.backup = tc.handler
			file := filepath.Join(t.TempDir(), "my-etcd.db")
			r := s.run(t, "backup", "my-etcd", "-o", file)
			expectCode(t, r, 1)
			t.Logf("stderr: %s", r.stderr)
			if !strings.HasPrefix(r.stderr, tc.stderr) {
				t.Errorf("stderr\n got %q\nwant prefix %q", r.stderr, tc.stderr)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q", r.stdout)
			}
			expectNoFiles(t, file)
		})
	}

	t.Run("existing file kept", func(t *testing.T) { testBackupFailureKeepsFile(t, flipped) })
	t.Run("not found", testBackupOfAMissingInstance)
	t.Run("usage", testBackupUsageErrors)
	t.Run("unwritable", func(t *testing.T) { testBackupToAnUnwritableFile(t, snap) })
}

// badSnapshotStream is a server's answer to a backup request that the plugin must refuse,
// with the start of the error it must print.
type badSnapshotStream struct {
	name    string
	handler http.HandlerFunc
	stderr  string // prefix
}

// badSnapshotStreams are the ways a backup stream can fail: snap changed, cut short or
// replaced, flipped being snap with one byte flipped.
func badSnapshotStreams(snap, flipped []byte) []badSnapshotStream {
	// A snapshot whose checksum matches but whose database is damaged: only the bbolt
	// check can tell.
	damaged := bytes.Clone(snap[:len(snap)-sha256.Size])
	for i := 4096; i < 8192 && i < len(damaged); i++ {
		damaged[i] = 0xAA
	}
	sum := sha256.Sum256(damaged)
	damaged = append(damaged, sum[:]...)

	return []badSnapshotStream{
		{"flipped byte", serveBytes(flipped), "error: backup of team/my-etcd: snapshot integrity check failed: the sha256 checksum at its end does not match"},
		{"damaged database", serveBytes(damaged), "error: backup of team/my-etcd: snapshot integrity check failed: "},
		{"truncated", serveBytes(snap[:len(snap)/2]), "error: backup of team/my-etcd: snapshot integrity check failed: "},
		{"not a snapshot", serveBytes([]byte("this is a placeholder, not a snapshot\n")), "error: backup of team/my-etcd: snapshot integrity check failed: "},
		{"empty", serveBytes(nil), "error: backup of team/my-etcd: the server sent an empty snapshot"},
		{"connection cut", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(len(snap)))
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(snap[:len(snap)/3])
			w.(http.Flusher).Flush()
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		}, "error: backup of team/my-etcd: receiving the snapshot (after "},
		{"no member", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"no healthy member of team/my-etcd can serve a snapshot","reason":"ServiceUnavailable","code":503}`)
		}, "Error from server (ServiceUnavailable): no healthy member of team/my-etcd can serve a snapshot\n"},
	}
}

// testBackupFailureKeepsFile checks that a failed backup leaves an existing FILE as it was.
func testBackupFailureKeepsFile(t *testing.T, flipped []byte) {
	s := newFakeServer(t)
	s.add(instance("team", "my-etcd", 1))
	s.backup = serveBytes(flipped)
	file := filepath.Join(t.TempDir(), "my-etcd.db")
	if err := os.WriteFile(file, []byte("previous backup"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := s.run(t, "backup", "my-etcd", "-o", file)
	expectCode(t, r, 1)
	if got, _ := os.ReadFile(file); string(got) != "previous backup" {
		t.Errorf("a failed backup replaced FILE: %q", got)
	}
	expectNoPartFiles(t, file)
}

// testBackupOfAMissingInstance checks the NotFound error of a backup of a missing instance.
func testBackupOfAMissingInstance(t *testing.T) {
	s := newFakeServer(t)
	file := filepath.Join(t.TempDir(), "x.db")
	r := s.run(t, "backup", "x", "-o", file)
	expectCode(t, r, 1)
	if r.stderr != "Error from server (NotFound): etcdinstances.etcdaas.dev \"x\" not found\n" {
		t.Errorf("stderr %q", r.stderr)
	}
	expectNoFiles(t, file)
}

// testBackupUsageErrors checks that a backup without a usable --output fails before
// reaching the server.
func testBackupUsageErrors(t *testing.T) {
	s := newFakeServer(t)
	r := s.run(t, "backup", "x")
	expectCode(t, r, 1)
	if r.stderr != "error: --output (-o) FILE is required\nSee 'kubectl etcdaas backup -h' for help and examples\n" {
		t.Errorf("stderr %q", r.stderr)
	}
	dir := t.TempDir()
	r = s.run(t, "backup", "x", "-o", dir)
	expectCode(t, r, 1)
	if !strings.HasPrefix(r.stderr, "error: "+dir+" is a directory: -o needs the name of the file to write\n") {
		t.Errorf("stderr %q", r.stderr)
	}
	if len(s.recorded()) != 0 {
		t.Error("usage errors reached the server")
	}
}

// testBackupToAnUnwritableFile checks the error of a backup into a missing directory.
func testBackupToAnUnwritableFile(t *testing.T, snap []byte) {
	s := newFakeServer(t)
	s.add(instance("team", "my-etcd", 1))
	s.backup = serveBytes(snap)
	file := filepath.Join(t.TempDir(), "no-such-dir", "x.db")
	r := s.run(t, "backup", "my-etcd", "-o", file)
	expectCode(t, r, 1)
	if !strings.HasPrefix(r.stderr, "error: backup of team/my-etcd: open ") {
		t.Errorf("stderr %q", r.stderr)
	}
}

func TestBackupWithoutChecksum(t *testing.T) {
	snap := testSnapshot(t)
	s := newFakeServer(t)
	s.add(instance("team", "my-etcd", 1))
	s.backup = serveBytes(snap[:len(snap)-sha256.Size])
	file := filepath.Join(t.TempDir(), "my-etcd.db")
	r := s.run(t, "backup", "my-etcd", "-o", file)
	expectCode(t, r, 0)
	if !strings.Contains(r.stderr, "Warning: the snapshot carries no sha256 checksum") {
		t.Errorf("stderr %q", r.stderr)
	}
}

func TestBackupInterrupted(t *testing.T) {
	snap := testSnapshot(t)
	ctx, cancel := context.WithCancel(context.Background())
	var calls int
	src := readerFunc(func(p []byte) (int, error) {
		calls++
		if calls == 3 {
			cancel()
		}
		n := copy(p, snap[:1024])
		return n, nil
	})
	file := filepath.Join(t.TempDir(), "x.db")
	_, err := saveSnapshot(ctx, src, file, io.Discard, verifyInChildProcess)
	if err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("err %v", err)
	}
	expectNoFiles(t, file)
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func TestTrailerDigest(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 100)
	sum := sha256.Sum256(data)
	full := append(bytes.Clone(data), sum[:]...)
	// Any split of the writes gives the same answer.
	for _, chunk := range []int{1, 7, 31, 32, 33, 100, len(full)} {
		d := newTrailerDigest()
		for off := 0; off < len(full); off += chunk {
			d.Write(full[off:min(off+chunk, len(full))])
		}
		if !d.matches() {
			t.Errorf("chunk %d: no match", chunk)
		}
		d = newTrailerDigest()
		d.Write(full[:len(full)-1])
		d.Write([]byte{full[len(full)-1] ^ 1})
		if d.matches() {
			t.Errorf("chunk %d: a changed trailer matches", chunk)
		}
	}
	if newTrailerDigest().matches() {
		t.Error("empty input matches")
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 999: "999 B", 1000: "1.0 kB", 1_500_000: "1.5 MB", 2_000_000_000: "2.0 GB", 5_000_000_000_000_000: "5000.0 TB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestVerifyInProcess(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	if err := os.WriteFile(good, testSnapshot(t), 0o600); err != nil {
		t.Fatal(err)
	}
	status, err := verifyInProcess(context.Background(), good)
	if err != nil || status.TotalKey != 100 || status.Revision < 101 {
		t.Errorf("status %+v, err %v", status, err)
	}
	// The same answer from the child.
	child, err := verifyInChildProcess(context.Background(), good)
	if err != nil || child != status {
		t.Errorf("child %+v, err %v", child, err)
	}
	bad := filepath.Join(dir, "bad.db")
	if err := os.WriteFile(bad, []byte("not a snapshot"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := verifyInProcess(context.Background(), bad); err == nil {
		t.Error("garbage verified")
	}
	if _, err := verifyInChildProcess(context.Background(), filepath.Join(dir, "missing.db")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file: %v", err)
	}
}

func TestChildFailure(t *testing.T) {
	for _, tc := range []struct {
		stderr string
		code   int
		want   string
	}{
		{"panic: assertion failed: page 3\n\ngoroutine 7 [running]:\n...", 2, "not a valid etcd snapshot: assertion failed: page 3"},
		{"invalid database\n", 1, "invalid database"},
		{"", 9, "the snapshot check exited with code 9"},
	} {
		if got := childFailure(tc.stderr, tc.code); got != tc.want {
			t.Errorf("childFailure(%q) = %q, want %q", tc.stderr, got, tc.want)
		}
	}
}

func TestProgressBar(t *testing.T) {
	var out bytes.Buffer
	b := newProgressBar(&out, "team/my-etcd")
	now := b.start
	b.now = func() time.Time { return now }
	chunk := make([]byte, 1_000_000)
	for range 10 {
		now = now.Add(100 * time.Millisecond)
		b.Write(chunk)
	}
	// 10 MB in one second: redrawn every 200ms, five times.
	if n := strings.Count(out.String(), "\r"); n != 5 {
		t.Errorf("%d redraws in %q", n, out.String())
	}
	b.finish(true)
	lines := strings.Split(out.String(), "\r")
	last := lines[len(lines)-1]
	if !strings.Contains(last, "10.0 MB  10.0 MB/s  1s done\n") || !strings.HasPrefix(last, "backup team/my-etcd [====") {
		t.Errorf("final line %q", last)
	}
	out.Reset()
	b.finish(false)
	if !strings.HasSuffix(out.String(), " failed\n") {
		t.Errorf("failure line %q", out.String())
	}
}

func TestProgressBarWithTotal(t *testing.T) {
	var out bytes.Buffer
	b := newProgressBar(&out, "team/my-etcd")
	b.verb, b.total = "restore", 4_000_000
	now := b.start
	b.now = func() time.Time { return now }
	now = now.Add(time.Second)
	b.Write(make([]byte, 1_000_000))
	if got := out.String(); !strings.Contains(got, "restore team/my-etcd [=====>              ] 1.0 MB/4.0 MB  1.0 MB/s") {
		t.Errorf("a quarter of the upload drawn as %q", got)
	}
}

// TestBackupToStandardOutput: -o - writes the snapshot to standard output once it passed the
// checks a file gets (nothing at all when one fails, so a pipe never carries a bad snapshot),
// with the summary on standard error; a terminal as standard output is refused before the
// server is asked.
func TestBackupToStandardOutput(t *testing.T) {
	snap := testSnapshot(t)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // where the snapshot is checked before it is written out
	defer func() {
		if left, _ := filepath.Glob(filepath.Join(tmp, "kubectl-etcdaas-backup-*")); len(left) != 0 {
			t.Errorf("temporary files left behind: %v", left)
		}
	}()
	s := newFakeServer(t)
	s.add(instance("team", "my-etcd", 1))
	s.backup = serveBytes(snap)
	r := s.run(t, "backup", "my-etcd", "-o", "-")
	expectCode(t, r, 0)
	if r.stdout != string(snap) {
		t.Errorf("stdout has %d bytes, want the %d of the snapshot", len(r.stdout), len(snap))
	}
	if !strings.HasPrefix(r.stderr, "Snapshot of team/my-etcd saved to standard output (") || !strings.Contains(r.stderr, ", 100 keys, hash ") {
		t.Errorf("stderr %q", r.stderr)
	}

	flipped := bytes.Clone(snap)
	flipped[len(flipped)/2] ^= 0xff
	for _, tc := range badSnapshotStreams(snap, flipped) {
		t.Run(tc.name, func(t *testing.T) {
			s.backup = tc.handler
			r := s.run(t, "backup", "my-etcd", "-o", "-")
			expectCode(t, r, 1)
			if r.stdout != "" || !strings.HasPrefix(r.stderr, tc.stderr) {
				t.Errorf("stdout has %d bytes, stderr %q; want none and prefix %q", len(r.stdout), r.stderr, tc.stderr)
			}
		})
	}

	requests := len(s.recorded())
	r = runPlugin(t, "", true, "--kubeconfig", s.kubeconfig(t, "team"), "backup", "my-etcd", "-o", "-")
	expectCode(t, r, 1)
	if !strings.HasPrefix(r.stderr, "error: standard output is a terminal: redirect it to a file or a pipe, or give -o FILE\n") {
		t.Errorf("stderr %q", r.stderr)
	}
	if len(s.recorded()) != requests {
		t.Error("a backup to a terminal reached the server")
	}
}

// TestBackupToAPipeOrALink: -o naming something that is not a regular file (a FIFO here; a
// device such as /dev/null, /dev/stdout on a pipe or a shell's >(...) are the same) gets the
// checked snapshot written into it, and stays what it was, instead of being replaced by a
// regular file renamed over it (as root, -o /dev/stdout used to replace the /dev/stdout
// symlink); the summary then goes to standard error, since the stream may be standard output.
// A symbolic link to a regular file stays a link, and the file it names gets the snapshot.
func TestBackupToAPipeOrALink(t *testing.T) {
	snap := testSnapshot(t)
	t.Setenv("TMPDIR", t.TempDir())
	s := newFakeServer(t)
	s.add(instance("team", "my-etcd", 1))
	s.backup = serveBytes(snap)
	dir := t.TempDir()

	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	received := make(chan []byte, 1)
	go func() {
		data, _ := os.ReadFile(fifo) // blocks until the plugin opens it for writing
		received <- data
	}()
	r := s.run(t, "backup", "my-etcd", "-o", fifo)
	expectCode(t, r, 0)
	select {
	case data := <-received:
		if !bytes.Equal(data, snap) {
			t.Errorf("the FIFO's reader got %d bytes, want the %d of the snapshot", len(data), len(snap))
		}
	case <-time.After(10 * time.Second):
		t.Error("nothing was written to the FIFO")
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			_ = f.Close() // unblock the reader
		}
	}
	if info, err := os.Lstat(fifo); err != nil || info.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("the FIFO was replaced: %v, %v", info.Mode(), err)
	}
	expectNoPartFiles(t, fifo)
	if r.stdout != "" || !strings.HasPrefix(r.stderr, "Snapshot of team/my-etcd saved to "+fifo+" (") {
		t.Errorf("stdout %q, stderr %q: want the summary on stderr only", r.stdout, r.stderr)
	}

	target, link := filepath.Join(dir, "target.db"), filepath.Join(dir, "link.db")
	if err := os.WriteFile(target, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	r = s.run(t, "backup", "my-etcd", "-o", link)
	expectCode(t, r, 0)
	if info, err := os.Lstat(link); err != nil || info.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the link was replaced: %v, %v", info.Mode(), err)
	}
	if got, _ := os.ReadFile(target); !bytes.Equal(got, snap) {
		t.Errorf("the link's target holds %d bytes, want the %d of the snapshot", len(got), len(snap))
	}
}

// TestBackupThroughALinkToAFileNotYetThere: -o names a symbolic link whose file does not
// exist yet (a "latest.db" link to the name of today's backup, say). The snapshot is written
// to the file the link names, as a shell's > would, and the link stays a link: renaming the
// part file over it would replace the link with a regular file and leave its file unwritten.
func TestBackupThroughALinkToAFileNotYetThere(t *testing.T) {
	snap := testSnapshot(t)
	s := newFakeServer(t)
	s.add(instance("team", "my-etcd", 1))
	s.backup = serveBytes(snap)
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "daily"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ link, dest, target string }{
		{"latest.db", filepath.Join(dir, "daily", "today.db"), filepath.Join(dir, "daily", "today.db")},
		{"relative.db", filepath.Join("daily", "relative-target.db"), filepath.Join(dir, "daily", "relative-target.db")},
	} {
		link := filepath.Join(dir, c.link)
		if err := os.Symlink(c.dest, link); err != nil {
			t.Fatal(err)
		}
		r := s.run(t, "backup", "my-etcd", "-o", link)
		expectCode(t, r, 0)
		if info, err := os.Lstat(link); err != nil || info.Mode()&os.ModeSymlink == 0 {
			t.Errorf("%s: the link was replaced: %v, %v", c.link, info.Mode(), err)
		}
		if got, err := os.ReadFile(c.target); err != nil || !bytes.Equal(got, snap) {
			t.Errorf("%s: the file the link names holds %d bytes (%v), want the %d of the snapshot", c.link, len(got), err, len(snap))
		}
		expectNoPartFiles(t, link)
		expectNoPartFiles(t, c.target)
	}
}

// TestBackupThroughALinkToADirectoryNotYetThere: -o names a symbolic link to "backups/", a
// directory that does not exist yet. A shell's > answers "Is a directory"; so must backup,
// before the download, and write nothing: a regular file named backups would leave the link
// naming a directory that is a file, which nothing can open through it, after "saved to".
func TestBackupThroughALinkToADirectoryNotYetThere(t *testing.T) {
	s := newFakeServer(t)
	s.add(instance("team", "my-etcd", 1))
	s.backup = serveBytes(testSnapshot(t))
	dir := t.TempDir()
	link := filepath.Join(dir, "latest")
	if err := os.Symlink("backups/", link); err != nil {
		t.Fatal(err)
	}
	r := s.run(t, "backup", "my-etcd", "-o", link)
	expectCode(t, r, 1)
	if !strings.HasPrefix(r.stderr, "error: "+link+" is a directory: -o needs the name of the file to write\n") {
		t.Errorf("stderr %q", r.stderr)
	}
	if _, err := os.Lstat(filepath.Join(dir, "backups")); !os.IsNotExist(err) {
		t.Errorf("%s was created (err=%v)", filepath.Join(dir, "backups"), err)
	}
	if len(s.recorded()) != 0 {
		t.Error("the backup reached the server")
	}
}

// TestBackupToStandardOutputLeavesNoCopy: by the time the first byte of the snapshot reaches
// standard output, its checked copy is gone from the temporary directory (kept only as an
// open file), so that a plugin killed while writing it (SIGPIPE when the reader of
// `backup -o - | ...` exits early, as `| head` does) leaves no copy of the instance's data
// behind in $TMPDIR.
func TestBackupToStandardOutputLeavesNoCopy(t *testing.T) {
	snap := testSnapshot(t)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	s := newFakeServer(t)
	s.add(instance("team", "my-etcd", 1))
	s.backup = serveBytes(snap)

	var out bytes.Buffer
	var leftAtFirstWrite []string
	first := true
	stdout := writerFunc(func(p []byte) (int, error) {
		if first {
			first = false
			leftAtFirstWrite, _ = filepath.Glob(filepath.Join(tmp, "kubectl-etcdaas-backup-*", "*"))
		}
		return out.Write(p)
	})
	var errOut bytes.Buffer
	f := NewFactory(genericiooptions.IOStreams{In: strings.NewReader(""), Out: stdout, ErrOut: &errOut})
	f.isTerminal = func(io.Writer) bool { return false }
	f.verifySnapshot = verifyInChildProcess
	if code := run(context.Background(), f, []string{"--kubeconfig", s.kubeconfig(t, "team"), "backup", "my-etcd", "-o", "-"}); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
	if !bytes.Equal(out.Bytes(), snap) {
		t.Errorf("stdout has %d bytes, want the %d of the snapshot", out.Len(), len(snap))
	}
	if len(leftAtFirstWrite) != 0 {
		t.Errorf("while the snapshot was written out, its copy was still on disk: %v", leftAtFirstWrite)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestConcurrentBackupsToOneFile: two backups to the same FILE at once (a cron job and a
// hand-run one) each write their own part file, so both succeed and FILE ends up holding one
// whole snapshot; a shared FILE.part made one of them fail (its part file renamed away under
// it, or checked while the other rewrote it) or both, and could leave FILE mixing the two.
func TestConcurrentBackupsToOneFile(t *testing.T) {
	snap := testSnapshot(t)
	s := newFakeServer(t)
	s.add(instance("team", "my-etcd", 1))
	var arrived sync.WaitGroup
	arrived.Add(2)
	s.backup = func(w http.ResponseWriter, r *http.Request) {
		arrived.Done()
		arrived.Wait() // both downloads run side by side
		serveBytes(snap)(w, r)
	}
	file := filepath.Join(t.TempDir(), "my-etcd.db")
	results := make([]result, 2)
	var done sync.WaitGroup
	for i := range results {
		done.Add(1)
		go func() {
			defer done.Done()
			results[i] = s.run(t, "backup", "my-etcd", "-o", file)
		}()
	}
	done.Wait()
	for i, r := range results {
		if r.code != 0 {
			t.Errorf("backup %d: exit %d, stderr %q", i, r.code, r.stderr)
		}
	}
	if got, _ := os.ReadFile(file); !bytes.Equal(got, snap) {
		t.Errorf("FILE holds %d bytes, want the %d of the snapshot", len(got), len(snap))
	}
	expectNoPartFiles(t, file)
}

// TestContextReaderSaysWhyItStopped: a backup or restore copy stopped by a signal says which
// signal ("hangup signal received", the cause signal.NotifyContext gives its context) whether
// the transport or the copy's own check notices first; the copy's check used to answer only
// "context canceled", which made the message depend on a race.
func TestContextReaderSaysWhyItStopped(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	cause := errors.New("hangup signal received")
	cancel(cause)
	n, err := contextReader{ctx: ctx, r: strings.NewReader("snapshot")}.Read(make([]byte, 8))
	if n != 0 || !errors.Is(err, cause) {
		t.Fatalf("Read after the signal: %d bytes, %v; want 0 and %q", n, err, cause)
	}
}

// cancellingReader cancels its context with cause on its first Read and fails that Read with
// context.Canceled, as an HTTP transport does when it notices the cancellation first.
type cancellingReader struct {
	cancel context.CancelCauseFunc
	cause  error
}

func (r cancellingReader) Read([]byte) (int, error) {
	r.cancel(r.cause)
	return 0, context.Canceled
}

// TestContextReaderSaysWhyTheTransportStopped: when the transport notices the signal first
// (its read fails with "context canceled"), the copy still says which signal stopped it:
// `kubectl etcdaas backup` sent SIGHUP said "receiving the snapshot (after 6569984 bytes):
// context canceled".
func TestContextReaderSaysWhyTheTransportStopped(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	cause := errors.New("hangup signal received")
	_, err := io.Copy(io.Discard, contextReader{ctx: ctx, r: cancellingReader{cancel: cancel, cause: cause}})
	if !errors.Is(err, cause) {
		t.Fatalf("copy stopped by the transport: %v; want %q", err, cause)
	}
}
