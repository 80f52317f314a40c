package embedetcd

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"

	"go.etcd.io/etcd/client/pkg/v3/logutil"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/storage/datadir"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// etcd 3.7 panics (lg.Panic) or exits (lg.Fatal) through its logger instead of returning an
// error on some failures while a member bootstraps, such as a WAL it cannot create on a full
// disk. Either ends the whole process, and with it every other member this process runs.

// BootstrapError is a failure etcd raised through a member's logger (lg.Panic, or lg.Fatal
// while the member starts) instead of returning an error. Start returns one raised while the
// member bootstrapped as an error.
type BootstrapError struct {
	// Fatal tells lg.Fatal from lg.Panic. Message is what etcd logged, and Err the error it
	// logged with it, if any (such as "no space left on device").
	Fatal   bool
	Message string
	Err     error
}

func (e *BootstrapError) Error() string {
	msg := "etcd panicked: " + e.Message
	if e.Fatal {
		msg = "etcd failed fatally: " + e.Message
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *BootstrapError) Unwrap() error { return e.Err }

// memberLogHooks are the panic and fatal hooks of a member's logger. etcd's lg.Panic, and its
// lg.Fatal while the member starts, raise a *BootstrapError carrying the error logged with the
// message. Once the member was abandoned (its start failed so), its leftover goroutines only
// end themselves on lg.Panic or lg.Fatal: its database's commit goroutine, whose commit of what
// the bootstrap wrote can fail on a full disk (lg.Fatal), would otherwise exit the process.
// Once it started, with contain set, either ends the goroutine and records the member's
// failure (see failure.go); without, lg.Fatal exits the process and lg.Panic panics.
type memberLogHooks struct {
	starting, abandoned atomic.Bool
	// contain is Member.ContainFailures; dir is the member's data directory.
	contain bool
	dir     string
	failure *failure
}

func newMemberLogHooks(contain bool, dir string) *memberLogHooks {
	return &memberLogHooks{contain: contain, dir: dir, failure: newFailure()}
}

func (h *memberLogHooks) options() []zap.Option {
	return []zap.Option{zap.WithPanicHook(panicHook{h}), zap.WithFatalHook(fatalHook{h})}
}

// containRunning ends the calling goroutine on a failure of a member that runs with contain set.
func (h *memberLogHooks) containRunning(fatal bool, ce *zapcore.CheckedEntry, fields []zapcore.Field) {
	if h.contain && !h.starting.Load() {
		h.failure.raise(h.dir, bootstrapError(fatal, ce, fields))
	}
}

type panicHook struct{ *memberLogHooks }

func (h panicHook) OnWrite(ce *zapcore.CheckedEntry, fields []zapcore.Field) {
	if h.abandoned.Load() {
		runtime.Goexit()
	}
	h.containRunning(false, ce, fields)
	panic(bootstrapError(false, ce, fields))
}

type fatalHook struct{ *memberLogHooks }

func (h fatalHook) OnWrite(ce *zapcore.CheckedEntry, fields []zapcore.Field) {
	switch {
	case h.abandoned.Load():
		runtime.Goexit()
	case h.starting.Load():
		panic(bootstrapError(true, ce, fields))
	}
	h.containRunning(true, ce, fields)
	zapcore.WriteThenFatal.OnWrite(ce, fields)
}

func bootstrapError(fatal bool, ce *zapcore.CheckedEntry, fields []zapcore.Field) *BootstrapError {
	e := &BootstrapError{Fatal: fatal, Message: ce.Message}
	for _, f := range fields {
		if err, ok := f.Interface.(error); ok && f.Type == zapcore.ErrorType {
			e.Err = err
		}
	}
	return e
}

// startEtcd is embed.StartEtcd, with a panic or fatal error etcd raises through its logger
// while the member bootstraps returned as an error wrapping a *BootstrapError. Other panics
// (bugs) are not recovered. One raised on another goroutine of the member meanwhile still ends
// the process, as a panic: etcd opens the database on a goroutine of its own, and a database
// it cannot open (lg.Panic "failed to open database") ends the process there.
//
// Such a failure leaks what etcd had opened: StartEtcd closes its listeners only on a returned
// error, but nothing references them after the panic, so a garbage collection closes them (their
// finalizers) and frees their ports. The member's database, if etcd had opened it, stays open
// and locked until the process exits: its commit goroutine references it and nothing can close
// it from here (see memberLogHooks for that goroutine's end). A later start of the member would
// wait for that lock forever; CheckDatabaseUnlocked refuses it.
func startEtcd(name string, cfg *embed.Config, hooks *memberLogHooks) (e *embed.Etcd, err error) {
	if err := CheckDatabaseUnlocked(name, cfg.Dir); err != nil {
		return nil, err
	}
	failedMembers.Delete(cfg.Dir)
	lg, err := hookedLogger(cfg, hooks)
	if err != nil {
		return nil, fmt.Errorf("logger of member %s: %w", name, err)
	}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg)
	hooks.starting.Store(true)
	// The member is abandoned before starting ends, so that no leftover goroutine's lg.Fatal
	// falls between the two and exits the process; an ordinary start error abandons it too
	// (etcd may return one with the database still open, its commit goroutine running).
	defer func() {
		defer hooks.starting.Store(false)
		r := recover()
		if r == nil {
			hooks.abandoned.Store(err != nil)
			return
		}
		be, ok := r.(*BootstrapError)
		if !ok {
			panic(r)
		}
		hooks.abandoned.Store(true)
		e, err = nil, fmt.Errorf("member %s could not start: %w", name, be)
	}()
	return embed.StartEtcd(cfg)
}

// hookedLogger is the logger etcd builds from cfg's LogOutputs and LogLevel, with hooks.
func hookedLogger(cfg *embed.Config, hooks *memberLogHooks) (*zap.Logger, error) {
	level, err := zap.ParseAtomicLevel(cfg.LogLevel)
	if err != nil {
		return nil, err
	}
	zc := logutil.DefaultZapLoggerConfig
	zc.Level, zc.OutputPaths, zc.ErrorOutputPaths = level, cfg.LogOutputs, cfg.LogOutputs
	return zc.Build(hooks.options()...)
}

// CheckDatabaseUnlocked fails if the database of the member name with data directory dir is
// locked (flock) by another open copy, where etcd, or a read-only open of it, would wait for
// it (a start that panicked leaves it open for good; so do some of etcd's own start errors,
// returned after it opened the database, and a failure of the member while it ran, which the
// error then names: see failure.go). It does not wait.
func CheckDatabaseUnlocked(name, dir string) error {
	path := datadir.ToBackendFileName(dir)
	f, err := os.Open(path)
	if err != nil {
		return nil // none yet, or one etcd reports it cannot open
	}
	defer func() { _ = f.Close() }() // closing it releases the lock taken below
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			if failed := failedBefore(name, dir); failed != nil {
				return failed
			}
			return fmt.Errorf("member %s cannot start: its database %s is still open elsewhere: in another process, in a stop of the member not finished yet, or in a start of it that failed in this process (etcd keeps it open until the process exits)", name, path)
		}
		return fmt.Errorf("member %s cannot start: locking its database %s: %w", name, path, err)
	}
	return nil
}
