package embedetcd

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func startReady(t *testing.T, m Member) *Etcd {
	t.Helper()
	e, err := Start(m)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := WaitReady(ctx, e); err != nil {
		t.Fatal(err)
	}
	return e
}

func memberClient(t *testing.T, m Member) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.ClientURL}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// A member whose disk fills while it runs (writes past RLIMIT_FSIZE fail with EFBIG, as
// ENOSPC would): etcd raises lg.Fatal ("failed to save Raft hard state and entries" or
// "failed to commit tx"), which exits the process, and every other member with it. With
// ContainFailures only that member ends: Failed reports why, it stops answering, a new start of
// it in this process is refused with that reason, and the other member goes on serving.
func TestARunningMembersFatalEndsOnlyThatMember(t *testing.T) {
	dir := t.TempDir()
	okM, fullM := soloMember(t, dir, "ok"), soloMember(t, dir, "full")
	okM.ContainFailures, fullM.ContainFailures = true, true
	ok := startReady(t, okM)
	t.Cleanup(ok.Close)
	full := startReady(t, fullM)
	okCli, fullCli := memberClient(t, okM), memberClient(t, fullM)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := okCli.Put(ctx, "before", "v"); err != nil {
		t.Fatal(err)
	}
	restore := limitFileSize(t, 1<<20)
	value := strings.Repeat("x", 1<<20)
	for i := 0; i < 3; i++ {
		pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := fullCli.Put(pctx, "big", value)
		pcancel()
		if err != nil {
			break
		}
	}
	select {
	case <-full.Failed():
	case <-time.After(30 * time.Second):
		t.Fatal("the member that could not write reported no failure")
	}
	restore()
	err := full.Failure()
	if err == nil || !errors.Is(err, syscall.EFBIG) || !strings.Contains(err.Error(), "member full failed while running: etcd failed fatally: ") {
		t.Fatalf("failure of the member that could not write: %v", err)
	}

	// It answers nobody any more, at once (no request waits on what ended).
	gctx, gcancel := context.WithTimeout(ctx, 5*time.Second)
	start := time.Now()
	_, gerr := fullCli.Get(gctx, "big", clientv3.WithSerializable())
	gcancel()
	if gerr == nil {
		t.Fatal("the failed member still serves reads")
	}
	if waited := time.Since(start); waited > 4*time.Second {
		t.Fatalf("a read of the failed member waited %s: %v", waited, gerr)
	}

	// Its database stays open: a start again says why it cannot, naming the failure.
	if again, err := Start(fullM); err == nil {
		again.Close()
		t.Fatal("the failed member started again in the same process")
	} else if !errors.Is(err, syscall.EFBIG) || !strings.Contains(err.Error(), "member full cannot start again in this process: it failed while running (etcd failed fatally: ") {
		t.Fatalf("start of the failed member again: %v", err)
	}

	// The process, and the other member in it, go on.
	if _, err := okCli.Put(ctx, "after", "v"); err != nil {
		t.Fatalf("the other member after the failure: %v", err)
	}
}

// etcd's lg.Panic in a member that runs with ContainFailures ends the goroutine that raised it
// and is recorded as the member's failure, as lg.Fatal is; the first failure is the one kept.
func TestAContainedRunningMembersPanicEndsOnlyItsGoroutine(t *testing.T) {
	dir := t.TempDir()
	cfg, err := Member{Name: "running", Dir: dir, PeerURL: "http://127.0.0.1:1", ClientURL: "http://127.0.0.1:2", LogOutput: dir + "/running.log"}.Config()
	if err != nil {
		t.Fatal(err)
	}
	hooks := newMemberLogHooks(true, dir)
	t.Cleanup(func() { failedMembers.Delete(dir) })
	lg, err := hookedLogger(cfg, hooks)
	if err != nil {
		t.Fatal(err)
	}
	for _, logFailure := range []func(string, ...zap.Field){lg.Panic, lg.Fatal} {
		expectGoroutineEnds(t, func() { logFailure("unexpected error during txn", zap.Error(syscall.EIO)) })
	}
	e := &Etcd{failure: hooks.failure}
	select {
	case <-e.Failed():
	default:
		t.Fatal("no failure recorded")
	}
	var be *BootstrapError
	if !errors.As(e.failure.err, &be) || be.Fatal || !errors.Is(be, syscall.EIO) {
		t.Fatalf("recorded failure %#v, want the first one (lg.Panic, EIO)", e.failure.err)
	}
	if err := failedBefore("running", dir); err == nil || !strings.Contains(err.Error(), "etcd panicked: unexpected error during txn: input/output error") {
		t.Fatalf("start refusal after the failure: %v", err)
	}
}
