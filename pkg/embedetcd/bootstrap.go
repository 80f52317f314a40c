package embedetcd

import (
	"errors"
	"fmt"
	"io/fs"
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

// etcd 3.7 panics through its logger (lg.Panic) instead of returning an error on some
// failures while a member bootstraps, such as a WAL it cannot create on a full disk. Unrecovered,
// such a panic ends the whole process, and with it every other member this process runs.

// PanicError is a panic etcd raised through a member's logger (lg.Panic). Start returns one
// raised while the member bootstrapped as an error.
type PanicError struct {
	// Message is what etcd logged, and Err the error it logged with it, if any (such as "no
	// space left on device").
	Message string
	Err     error
}

func (e *PanicError) Error() string {
	if e.Err == nil {
		return "etcd panicked: " + e.Message
	}
	return fmt.Sprintf("etcd panicked: %s: %v", e.Message, e.Err)
}

func (e *PanicError) Unwrap() error { return e.Err }

// memberLogHooks are the panic and fatal hooks of a member's logger. etcd's lg.Panic raises a
// *PanicError carrying the error logged with the message rather than the bare message. Once the
// member was abandoned (its bootstrap panicked), its leftover goroutines only end themselves on
// lg.Panic or lg.Fatal: its database's commit goroutine, whose commit of what the bootstrap
// wrote can fail on a full disk (lg.Fatal), would otherwise exit the whole process.
type memberLogHooks struct{ abandoned atomic.Bool }

func (h *memberLogHooks) options() []zap.Option {
	return []zap.Option{zap.WithPanicHook(panicHook{h}), zap.WithFatalHook(fatalHook{h})}
}

type panicHook struct{ *memberLogHooks }

func (h panicHook) OnWrite(ce *zapcore.CheckedEntry, fields []zapcore.Field) {
	if h.abandoned.Load() {
		runtime.Goexit()
	}
	p := &PanicError{Message: ce.Message}
	for _, f := range fields {
		if err, ok := f.Interface.(error); ok && f.Type == zapcore.ErrorType {
			p.Err = err
		}
	}
	panic(p)
}

type fatalHook struct{ *memberLogHooks }

func (h fatalHook) OnWrite(ce *zapcore.CheckedEntry, fields []zapcore.Field) {
	if h.abandoned.Load() {
		runtime.Goexit()
	}
	zapcore.WriteThenFatal.OnWrite(ce, fields)
}

// startEtcd is embed.StartEtcd, with a panic etcd raises through its logger while the member
// bootstraps returned as an error wrapping a *PanicError. Other panics (bugs) are not recovered.
//
// Such a panic leaks what etcd had opened: StartEtcd closes its listeners only on a returned
// error, but nothing references them after the panic, so a garbage collection closes them (their
// finalizers) and frees their ports. The member's database, though, stays open and locked until
// the process exits: its commit goroutine references it and nothing can close it from here (see
// memberLogHooks for that goroutine's end). A later start of the member would wait for that
// lock forever; checkDatabaseUnlocked refuses it.
func startEtcd(name string, cfg *embed.Config) (e *embed.Etcd, err error) {
	if err := checkDatabaseUnlocked(name, cfg.Dir); err != nil {
		return nil, err
	}
	hooks := &memberLogHooks{}
	lg, err := hookedLogger(cfg, hooks)
	if err != nil {
		return nil, fmt.Errorf("logger of member %s: %w", name, err)
	}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg)
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		p, ok := r.(*PanicError)
		if !ok {
			panic(r)
		}
		hooks.abandoned.Store(true)
		e, err = nil, fmt.Errorf("member %s could not start: %w", name, p)
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

// checkDatabaseUnlocked fails if the database of the member with data directory dir is locked
// (flock) by another open copy, where etcd would wait for it without end (a start that
// panicked leaves it open for good; so do some of etcd's own start errors, returned after it
// opened the database).
func checkDatabaseUnlocked(name, dir string) error {
	path := datadir.ToBackendFileName(dir)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("member %s cannot start: %w", name, err)
	}
	defer func() { _ = f.Close() }() // closing it releases the lock taken below
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("member %s cannot start: its database %s is still open elsewhere: in another process, in a stop of the member not finished yet, or in a start of it that failed in this process (etcd keeps it open until the process exits)", name, path)
		}
		return fmt.Errorf("member %s cannot start: locking its database %s: %w", name, path, err)
	}
	return nil
}
