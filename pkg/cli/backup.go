package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"

	"github.com/etcdaas/etcdaas/pkg/durable"
)

// backupOptions are the flags of `backup`.
type backupOptions struct {
	output string
}

func newBackupCommand(f *Factory) *cobra.Command {
	o := &backupOptions{}
	cmd := &cobra.Command{
		Use:   "backup NAME -o FILE",
		Short: "Save a verified etcd snapshot of an ETCDInstance to a file",
		Long: `Save a point-in-time etcd snapshot of an ETCDInstance, streamed from its backup
subresource, to FILE.

The snapshot is written to FILE.NNN.part first, checked (its sha256 trailer and the integrity of
the bbolt database, as 'etcdutl snapshot status' does) and only then renamed to FILE: FILE
never holds a partial or corrupt snapshot. Restore it with 'etcdutl snapshot restore FILE'.
With -o -, the snapshot is checked the same way in a temporary directory and only then
written to standard output (nothing is written if a check fails); the summary goes to
standard error. So is a FILE that is not a regular file (a FIFO, a device such as /dev/null,
/dev/stdout on a pipe, a shell's >(...)), which is written into, not replaced; a symbolic
link is followed.
On a terminal, a progress line shows bytes received and the transfer rate.`,
		Example: `  # Back up my-etcd
  kubectl etcdaas backup my-etcd -o my-etcd.db

  # Then check it with etcdutl
  etcdutl snapshot status my-etcd.db -w table

  # Compress it on the way
  kubectl etcdaas backup my-etcd -o - | gzip > my-etcd.db.gz`,
		Args: exactlyOneName,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, f, args[0])
		},
	}
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "File to write the snapshot to, or - for standard output (required).")
	return cmd
}

func (o *backupOptions) run(cmd *cobra.Command, f *Factory, name string) error {
	if o.output == "" {
		return usageErrorf(cmd, "--output (-o) FILE is required")
	}
	path, out, closeOut, err := o.openTarget(cmd, f)
	if err != nil {
		return err
	}
	defer closeOut()
	through, toStdout := out != nil, o.output == "-"
	ns, client, err := f.NamespacedClient()
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	stream, err := client.EtcdaasV1beta1().RESTClient().Get().
		Namespace(ns).
		Resource("etcdinstances").
		Name(name).
		SubResource("backup").
		Stream(ctx)
	if err != nil {
		return err
	}
	defer stream.Close()

	var progress io.Writer = io.Discard
	var bar *progressBar
	if f.isTerminal != nil && f.isTerminal(f.IOStreams.ErrOut) {
		bar = newProgressBar(f.IOStreams.ErrOut, fmt.Sprintf("%s/%s", ns, name))
		progress = bar
	}
	save, summary, where := saveSnapshot, f.IOStreams.Out, o.output
	if through {
		// The snapshot goes through a stream (standard output, a pipe, a device), which may
		// be standard output: the summary goes to standard error.
		save = func(ctx context.Context, src io.Reader, _ string, progress io.Writer, verify verifyFunc) (savedSnapshot, error) {
			return writeVerified(ctx, src, out, where, progress, verify)
		}
		summary = f.IOStreams.ErrOut
		if toStdout {
			where = "standard output"
		}
	}
	result, err := save(ctx, stream, path, progress, f.verifySnapshot)
	if bar != nil {
		bar.finish(err == nil)
	}
	if err != nil {
		return fmt.Errorf("backup of %s/%s: %w", ns, name, err)
	}
	if !result.checksummed {
		fmt.Fprintf(f.IOStreams.ErrOut, "Warning: the snapshot carries no sha256 checksum; restore it with 'etcdutl snapshot restore --skip-hash-check'\n")
	}
	fmt.Fprintf(summary, "Snapshot of %s/%s saved to %s (%s, revision %d, %d keys, hash %08x)\n",
		ns, name, where, formatBytes(result.size), result.status.Revision, result.status.TotalKey, result.status.Hash)
	return nil
}

// openTarget checks -o before anything is downloaded and opens what the snapshot goes through
// once checked: standard output for "-", or a FIFO, device or pipe that exists (outputTarget).
// out is nil when the snapshot is renamed into place at path instead. closeOut closes what was
// opened.
func (o *backupOptions) openTarget(cmd *cobra.Command, f *Factory) (path string, out io.Writer, closeOut func(), err error) {
	closeOut = func() {}
	if o.output == "-" && f.isTerminal != nil && f.isTerminal(f.IOStreams.Out) {
		return "", nil, closeOut, usageErrorf(cmd, "standard output is a terminal: redirect it to a file or a pipe, or give -o FILE")
	}
	path, through, err := outputTarget(o.output)
	if errors.Is(err, errIsDirectory) {
		// Checked before the download, not by the rename at its end.
		return "", nil, closeOut, usageErrorf(cmd, "%s is a directory: -o needs the name of the file to write", o.output)
	}
	if err != nil || !through {
		return path, nil, closeOut, err
	}
	if o.output == "-" {
		return path, f.IOStreams.Out, closeOut, nil
	}
	file, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return "", nil, closeOut, err
	}
	closeOut = func() { _ = file.Close() }
	if f.isTerminal != nil && f.isTerminal(file) {
		closeOut()
		return "", nil, func() {}, usageErrorf(cmd, "%s is a terminal: give -o the name of a file, or redirect standard output with -o -", o.output)
	}
	return path, file, closeOut, nil
}

// errIsDirectory is outputTarget's error for a directory.
var errIsDirectory = errors.New("is a directory")

// outputTarget tells how backup writes to -o output: the path to write and whether the
// snapshot goes through it once checked (as for "-") rather than by renaming a part file over
// it. A path that exists and is not a regular file (a device such as /dev/null, a FIFO,
// /dev/stdout on a pipe, the /dev/fd/N of a process substitution) is written through, since
// the rename would replace it with a regular file; a symbolic link to a regular file is
// followed, so that the rename replaces the file it names and not the link.
func outputTarget(output string) (path string, through bool, err error) {
	if output == "-" {
		return output, true, nil
	}
	info, err := os.Stat(output)
	switch {
	case err != nil:
		// Not there (yet): the part file is created next to it, and fails as it would; a
		// link to a file not there yet is written where it points, as a shell's > would.
		path, err = danglingLinkTarget(output)
		return path, false, err
	case info.IsDir():
		return "", false, errIsDirectory
	case !info.Mode().IsRegular():
		return output, true, nil
	}
	path, err = filepath.EvalSymlinks(output)
	return path, false, err
}

// maxLinks is how many symbolic links danglingLinkTarget follows, as Linux's path lookup.
const maxLinks = 40

// danglingLinkTarget returns the path of the file output names once the symbolic links it
// goes through are followed: output itself when it is no link (or cannot be read as one),
// errIsDirectory when a link names a directory ("DIR/").
func danglingLinkTarget(output string) (string, error) {
	for range maxLinks {
		info, err := os.Lstat(output)
		if err != nil || info.Mode()&os.ModeSymlink == 0 {
			return output, nil
		}
		dest, err := os.Readlink(output)
		if err != nil {
			return "", err
		}
		if strings.HasSuffix(dest, string(filepath.Separator)) {
			// A link to "DIR/" names a directory, there or not, as a shell's > finds.
			return "", errIsDirectory
		}
		if !filepath.IsAbs(dest) {
			// Relative to the directory that holds the link, itself maybe reached by links.
			parent, err := filepath.EvalSymlinks(filepath.Dir(output))
			if err != nil {
				return "", err
			}
			dest = filepath.Join(parent, dest)
		}
		output = dest
	}
	return "", &fs.PathError{Op: "open", Path: output, Err: syscall.ELOOP}
}

// writeVerified saves src as saveSnapshot does, in a temporary directory, and only once it
// passed the checks copies it to out (named name in errors): standard output never carries a
// snapshot that failed them, and carries nothing at all then.
func writeVerified(ctx context.Context, src io.Reader, out io.Writer, name string, progress io.Writer, verify verifyFunc) (savedSnapshot, error) {
	dir, err := os.MkdirTemp("", "kubectl-etcdaas-backup-")
	if err != nil {
		return savedSnapshot{}, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	path := filepath.Join(dir, "snapshot.db")
	result, err := saveSnapshot(ctx, src, path, progress, verify)
	if err != nil {
		return result, err
	}
	file, err := os.Open(path)
	if err != nil {
		return result, err
	}
	defer func() { _ = file.Close() }()
	// Only the open file holds the copy from now on: a plugin killed while writing it out
	// (SIGPIPE when the reader of a pipe exits early) leaves no copy of the data behind.
	_ = os.RemoveAll(dir)
	if _, err := io.Copy(out, contextReader{ctx: ctx, r: file}); err != nil {
		return result, fmt.Errorf("writing the verified snapshot to %s: %w", name, err)
	}
	return result, nil
}

// savedSnapshot describes a snapshot saveSnapshot wrote and checked.
type savedSnapshot struct {
	// size is the number of bytes received, checksum included.
	size int64
	// checksummed is true when the snapshot ended with a sha256 trailer that matched.
	checksummed bool
	// status is what etcdutl's snapshot status reports for the file.
	status snapshot.Status
}

// saveSnapshot copies src to a part file beside path (path.NNN.part, its own: backups run at
// once to the same path do not write into each other's), checks it with verify and renames it
// to path. On any error the part file is removed and path is left as it was.
func saveSnapshot(ctx context.Context, src io.Reader, path string, progress io.Writer, verify verifyFunc) (result savedSnapshot, err error) {
	file, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.part")
	if err != nil {
		var pathErr *fs.PathError
		if errors.As(err, &pathErr) {
			err = &fs.PathError{Op: "open", Path: pathErr.Path, Err: pathErr.Err}
		}
		return result, err
	}
	part := file.Name()
	defer func() {
		if err != nil {
			_ = file.Close()
			_ = os.Remove(part)
		}
	}()

	digest := newTrailerDigest()
	result.size, err = io.Copy(io.MultiWriter(file, digest, progress), contextReader{ctx: ctx, r: src})
	if err != nil {
		return result, fmt.Errorf("receiving the snapshot (after %d bytes): %w", result.size, err)
	}
	if err = file.Sync(); err != nil {
		return result, err
	}
	if err = file.Close(); err != nil {
		return result, err
	}
	if result.size == 0 {
		return result, errors.New("the server sent an empty snapshot")
	}
	if hasChecksum(result.size) {
		if !digest.matches() {
			return result, errors.New("snapshot integrity check failed: the sha256 checksum at its end does not match its content (corrupted in transit?)")
		}
		result.checksummed = true
	}
	if result.status, err = verify(ctx, part); err != nil {
		return result, fmt.Errorf("snapshot integrity check failed: %w", err)
	}
	// The rename is made durable too: a power loss right after "saved" must not lose FILE.
	if err = durable.Rename(part, path); err != nil {
		return result, err
	}
	return result, nil
}

// hasChecksum reports whether a snapshot of n bytes ends with a sha256 digest of what comes
// before it, by etcd's own rule: etcd pads its database to 512-byte multiples and
// Maintenance.Snapshot appends the 32-byte digest.
func hasChecksum(n int64) bool {
	return n%512 == sha256.Size
}

// trailerDigest hashes everything written to it except the last sha256.Size bytes, which it
// keeps, so that a streamed snapshot's trailing checksum can be checked without a second read.
type trailerDigest struct {
	h    hash.Hash
	tail []byte
}

func newTrailerDigest() *trailerDigest {
	return &trailerDigest{h: sha256.New(), tail: make([]byte, 0, sha256.Size)}
}

// Write implements io.Writer.
func (d *trailerDigest) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) >= sha256.Size {
		d.h.Write(d.tail)
		d.h.Write(p[:len(p)-sha256.Size])
		d.tail = append(d.tail[:0], p[len(p)-sha256.Size:]...)
		return n, nil
	}
	combined := append(d.tail, p...)
	if extra := len(combined) - sha256.Size; extra > 0 {
		d.h.Write(combined[:extra])
		combined = append(combined[:0], combined[extra:]...)
	}
	d.tail = combined
	return n, nil
}

// matches reports whether the kept trailer is the sha256 of everything before it.
func (d *trailerDigest) matches() bool {
	return len(d.tail) == sha256.Size && bytes.Equal(d.h.Sum(nil), d.tail)
}

// contextReader stops reading once ctx is done, so that an interrupt ends the copy even if
// the transport does not notice.
type contextReader struct {
	ctx context.Context
	r   io.Reader
}

// Read reads from r until ctx is done, then returns why it is (context.Cause: "hangup signal
// received" for the plugin's signals), also when r noticed first: an HTTP transport's read
// then fails with a bare "context canceled".
func (c contextReader) Read(p []byte) (int, error) {
	if c.ctx.Err() != nil {
		return 0, context.Cause(c.ctx)
	}
	n, err := c.r.Read(p)
	if err != nil && err != io.EOF && c.ctx.Err() != nil {
		err = context.Cause(c.ctx)
	}
	return n, err
}

// progressBar draws one self-overwriting line on a terminal: bytes transferred (of total
// when known), the average rate in MB/s and the elapsed time.
type progressBar struct {
	w     io.Writer
	label string
	// verb names the transfer, "backup" unless set.
	verb string
	// total is the number of bytes expected, 0 when unknown (an indeterminate bar).
	total    int64
	start    time.Time
	last     time.Time
	written  int64
	now      func() time.Time
	interval time.Duration
	width    int
}

func newProgressBar(w io.Writer, label string) *progressBar {
	now := time.Now()
	return &progressBar{w: w, label: label, verb: "backup", start: now, last: now, now: time.Now, interval: 200 * time.Millisecond}
}

// Write implements io.Writer: it counts bytes and redraws at most every interval.
func (b *progressBar) Write(p []byte) (int, error) {
	b.written += int64(len(p))
	if now := b.now(); now.Sub(b.last) >= b.interval {
		b.last = now
		b.draw(now, "")
	}
	return len(p), nil
}

// finish draws the final state and ends the line.
func (b *progressBar) finish(ok bool) {
	suffix := " done"
	if !ok {
		suffix = " failed"
	}
	b.draw(b.now(), suffix)
	fmt.Fprintln(b.w)
}

func (b *progressBar) draw(now time.Time, suffix string) {
	elapsed := now.Sub(b.start)
	rate := 0.0
	if elapsed > 0 {
		rate = float64(b.written) / elapsed.Seconds() / 1e6
	}
	const cells = 20
	bar := make([]byte, cells)
	for i := range bar {
		bar[i] = ' '
	}
	amount := formatBytes(b.written)
	switch {
	case suffix != "":
		for i := range bar {
			bar[i] = '='
		}
	case b.total > 0:
		// A determinate bar: the size is known (an upload).
		done := int(min(b.written, b.total) * cells / b.total)
		for i := range done {
			bar[i] = '='
		}
		if done < cells {
			bar[done] = '>'
		}
		amount = fmt.Sprintf("%s/%s", amount, formatBytes(b.total))
	default:
		// An indeterminate bar: the size of a snapshot is not known until it ends.
		pos := int(elapsed/(100*time.Millisecond)) % cells
		bar[pos] = '='
		if pos+1 < cells {
			bar[pos+1] = '>'
		}
	}
	line := fmt.Sprintf("%s %s [%s] %s  %.1f MB/s  %s%s", b.verb, b.label, bar, amount, rate, elapsed.Truncate(100*time.Millisecond), suffix)
	pad := ""
	if len(line) < b.width {
		pad = string(bytes.Repeat([]byte{' '}, b.width-len(line)))
	}
	b.width = len(line)
	fmt.Fprintf(b.w, "\r%s%s", line, pad)
}

// formatBytes prints n with a decimal unit: 512 B, 1.5 kB, 12.3 MB, 1.2 GB.
func formatBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	value := float64(n)
	for _, suffix := range []string{"kB", "MB", "GB", "TB"} {
		value /= unit
		if value < unit || suffix == "TB" {
			return fmt.Sprintf("%.1f %s", value, suffix)
		}
	}
	return fmt.Sprintf("%d B", n)
}
