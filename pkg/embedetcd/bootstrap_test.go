package embedetcd

import (
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcdaas/etcdaas/pkg/loopback"
)

// limitFileSize makes the process unable to grow a file past limit bytes (RLIMIT_FSIZE: writes
// past it fail with EFBIG), as a full disk would, until the returned function restores it.
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
	restored := false
	restore = func() {
		if restored {
			return
		}
		restored = true
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(restore)
	return restore
}

func soloMember(t *testing.T, dir, name string) Member {
	t.Helper()
	ports, err := loopback.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	return Member{
		Name: name, Dir: filepath.Join(dir, name),
		PeerURL: "http://" + loopback.HostPort(ports[0]), ClientURL: "http://" + loopback.HostPort(ports[1]),
		LogOutput: filepath.Join(dir, name+".log"),
	}
}

// etcd 3.7 panics ("failed to create WAL") when it cannot preallocate a new member's 64 MB WAL
// segment, as on a full disk. The member must fail alone, with the cause, and the process go on.
func TestABootstrapPanicFailsThatMemberOnly(t *testing.T) {
	dir := t.TempDir()
	failing := soloMember(t, dir, "full")
	// Room for the database, which etcd grows to 16 MiB and some pages at its first commit (a
	// commit that failed would end the process: etcd's lg.Fatal), but not for the WAL.
	restore := limitFileSize(t, 32<<20)
	e, err := Start(failing)
	restore()
	if err == nil {
		e.Close()
		t.Fatal("a member whose WAL could not be created started")
	}
	var p *BootstrapError
	if !errors.As(err, &p) || p.Message != "failed to create WAL" || !errors.Is(err, syscall.EFBIG) {
		t.Fatalf("want etcd's panic with the WAL's EFBIG, got %v", err)
	}
	if want := "member full could not start: etcd panicked: failed to create WAL: "; !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("error %q does not start with %q", err, want)
	}

	// Its database stayed open: another start is refused rather than waiting for its lock
	// forever.
	if _, err := Start(failing); err == nil || !strings.Contains(err.Error(), "a start of it that failed in this process") {
		t.Fatalf("a second start of the failed member: %v", err)
	}
	// Its listeners are referenced by nothing: a garbage collection closes them.
	for _, u := range []string{failing.PeerURL, failing.ClientURL} {
		port := portOf(t, u)
		for i := 0; !loopback.PortFree(port); i++ {
			if i == 50 {
				t.Fatalf("the failed member's listener on %s stayed open", u)
			}
			runtime.GC()
			time.Sleep(100 * time.Millisecond)
		}
	}

	// The process goes on: the member starts afresh, on the same ports, once its data is gone.
	if err := os.RemoveAll(failing.Dir); err != nil {
		t.Fatal(err)
	}
	startServing(t, failing)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{failing.ClientURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cli.Close() }()
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
}

// startServing starts m and waits until it serves clients; it is closed when the test ends.
func startServing(t *testing.T, m Member) {
	t.Helper()
	e, err := Start(m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := WaitReady(ctx, e); err != nil {
		t.Fatal(err)
	}
}

func portOf(t *testing.T, rawURL string) int {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// etcd 3.7 exits the process (lg.Fatal) when it cannot create a member's snapshot directory,
// here because a file is in its place. Only that member fails, before etcd opened its database:
// once the file is gone it starts.
func TestABootstrapFatalFailsThatMemberOnly(t *testing.T) {
	m := soloMember(t, t.TempDir(), "blocked")
	snapDir := filepath.Join(m.Dir, "member", "snap")
	if err := os.MkdirAll(filepath.Dir(snapDir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(snapDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	e, err := Start(m)
	if err == nil {
		e.Close()
		t.Fatal("a member without a snapshot directory started")
	}
	var be *BootstrapError
	if !errors.As(err, &be) || !be.Fatal || !errors.Is(err, syscall.ENOTDIR) {
		t.Fatalf("want etcd's fatal error with ENOTDIR, got %v", err)
	}
	if want := "member blocked could not start: etcd failed fatally: failed to create snapshot directory: "; !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("error %q does not start with %q", err, want)
	}
	if err := os.Remove(snapDir); err != nil {
		t.Fatal(err)
	}
	// Its listeners are closed by a garbage collection (see startEtcd); it may take new ports.
	ports, err := loopback.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	m.PeerURL, m.ClientURL = "http://"+loopback.HostPort(ports[0]), "http://"+loopback.HostPort(ports[1])
	startServing(t, m)
}

// After an abandoned member's bootstrap, what it left running (its database's commit
// goroutine) only ends itself on etcd's lg.Fatal or lg.Panic, logged to the member's log: the
// process, with every other member, goes on.
func TestAnAbandonedMembersFatalEndsOnlyItsGoroutine(t *testing.T) {
	cfg, err := Member{Name: "gone", PeerURL: "http://127.0.0.1:1", ClientURL: "http://127.0.0.1:2", LogOutput: filepath.Join(t.TempDir(), "gone.log")}.Config()
	if err != nil {
		t.Fatal(err)
	}
	hooks := &memberLogHooks{}
	lg, err := hookedLogger(cfg, hooks)
	if err != nil {
		t.Fatal(err)
	}
	hooks.abandoned.Store(true)
	for _, logFatally := range []func(string, ...zap.Field){lg.Fatal, lg.Panic} {
		expectGoroutineEnds(t, func() { logFatally("failed to commit tx", zap.Error(syscall.ENOSPC)) })
	}
	logged, err := os.ReadFile(cfg.LogOutputs[0])
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(string(logged), `"msg":"failed to commit tx","error":"no space left on device"`); got != 2 {
		t.Fatalf("%d of 2 fatal entries logged:\n%s", got, logged)
	}
}

// expectGoroutineEnds runs log, a call of a member logger's Fatal or Panic, in a goroutine of
// its own and fails the test if that goroutine goes on after it (the hooks must end it, and
// nothing else: the test process goes on).
func expectGoroutineEnds(t *testing.T, log func()) {
	t.Helper()
	ended, went := make(chan struct{}), false
	go func() {
		defer close(ended)
		log()
		went = true
	}()
	<-ended
	if went {
		t.Fatal("the goroutine went on after a fatal or panic log")
	}
}
