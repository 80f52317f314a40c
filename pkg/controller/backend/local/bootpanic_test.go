package local

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestAMemberWhoseStartPanicsFailsOnlyItsInstance gives a new instance no room for its first
// member's 64 MB WAL (a 32 MiB file size limit, as a nearly full disk; its database, 16 MiB
// and some pages, fits): etcd panics while that member bootstraps. The instance's Sync reports why, a later Sync is refused rather than hanging on
// the database etcd left open, and the process goes on serving the other instance.
func TestAMemberWhoseStartPanicsFailsOnlyItsInstance(t *testing.T) {
	b := newBackend(t, t.TempDir())
	defer func() { _ = b.Close() }()
	converge(t, b, instance("ok", 1, false))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	restore := limitFileSize(t, 32<<20)
	full := instance("full", 1, false)
	_, err := b.Sync(ctx, full)
	restore()
	if err == nil || !strings.Contains(err.Error(), "member full-0 could not start: etcd panicked: failed to create WAL: file too large") {
		t.Fatalf("first sync of the instance without room: %v", err)
	}
	if _, err := b.Sync(ctx, full); err == nil || !strings.Contains(err.Error(), "still open elsewhere") {
		t.Fatalf("second sync of the instance without room: %v", err)
	}

	if _, err := memberClient(t, b, "ok").Put(ctx, "k", "v"); err != nil {
		t.Fatalf("the other instance after the panic: %v", err)
	}
}

// TestAMemberFailingWhileRunningFailsOnlyItsInstance fills the disk (a 1 MiB file size limit)
// under an instance's running member while it takes a write: etcd raises lg.Fatal in it, which
// would end the whole process and every instance's members with it, and again at each restart
// while the disk stays full. Only that instance must fail, its status saying why; the other
// instance goes on serving.
func TestAMemberFailingWhileRunningFailsOnlyItsInstance(t *testing.T) {
	b := newBackend(t, t.TempDir())
	defer func() { _ = b.Close() }()
	converge(t, b, instance("ok", 1, false))
	full := instance("full", 1, false)
	converge(t, b, full)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cli := memberClient(t, b, "full")

	restore := limitFileSize(t, 1<<20)
	for range 3 {
		pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := cli.Put(pctx, "big", strings.Repeat("x", 1<<20))
		pcancel()
		if err != nil {
			break
		}
	}
	restore()

	want := "full-0: cannot start: member full-0 cannot start again in this process: it failed while running (etcd failed fatally: "
	var last string
	for ctx.Err() == nil && !strings.Contains(last, want) {
		res, err := b.Sync(ctx, full)
		if err != nil {
			t.Fatal(err)
		}
		last = res.Unhealthy
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(last, want) || !strings.Contains(last, "file too large") {
		t.Fatalf("the instance whose member failed says %q, want it to contain %q and the cause", last, want)
	}
	if _, err := memberClient(t, b, "ok").Put(ctx, "k", "v"); err != nil {
		t.Fatalf("the other instance after the failure: %v", err)
	}
}

// A member that failed while running cannot be stopped (etcd waits for the goroutine that
// ended): closing the backend, as a server's graceful stop does, must not wait for it, even
// before any Sync noticed the failure.
func TestClosingTheBackendDoesNotWaitForAFailedMember(t *testing.T) {
	b := newBackend(t, t.TempDir())
	full := instance("full", 1, false)
	converge(t, b, full)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cli := memberClient(t, b, "full")
	st, err := loadState(filepath.Join(b.opts.Dir, "instances", "ns", "full"))
	if err != nil {
		t.Fatal(err)
	}
	e := b.embedded(filepath.Join(b.opts.Dir, "instances", "ns", "full"), &st.Members[0])
	if e == nil {
		t.Fatal("the member does not run")
	}

	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	limited := old
	limited.Cur = 1 << 20
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &limited); err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
	_, _ = cli.Put(pctx, "big", strings.Repeat("x", 1<<20))
	pcancel()
	select {
	case <-e.Failed():
	case <-ctx.Done():
		t.Fatal("the member that could not write did not fail")
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("closing the backend took %s", took)
	}
}

// limitFileSize lowers the process's file size limit (RLIMIT_FSIZE) to limit bytes, so that a
// write past it fails as on a full disk, until restore or the test's end puts the old one back.
func limitFileSize(t *testing.T, limit uint64) (restore func()) {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	lowered := old
	lowered.Cur = limit
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lowered); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	restore = func() {
		once.Do(func() {
			if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(restore)
	return restore
}
