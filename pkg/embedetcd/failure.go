package embedetcd

import (
	"fmt"
	"runtime"
	"sync"
)

// etcd 3.7 also ends the process (lg.Fatal) or panics (lg.Panic) through its logger when a
// member that runs meets an error it does not expect, such as a write of its database or WAL
// failing on a full disk ("failed to commit tx"). For a process running the members of many
// clusters, that takes every other member down with the one whose disk filled, and again at
// every restart while the disk stays full. A member started with Member.ContainFailures ends
// alone instead: the goroutine that raised the failure ends (runtime.Goexit), the member stops
// serving, and Etcd.Failed tells its owner.
//
// etcd cannot stop such a member: the goroutine that ended may have held its database's lock,
// and its database stays open (and locked) until the process exits. A later Start of the member
// in this process is refused with the failure as the reason (see failedMembers).

// failedMembers holds, by data directory, the failure of each member that failed while running
// in this process: its database stays open, so it cannot start again until the process exits.
var failedMembers sync.Map

// failure is the failure of a member that runs, recorded once.
type failure struct {
	once sync.Once
	done chan struct{}
	err  *BootstrapError
}

func newFailure() *failure { return &failure{done: make(chan struct{})} }

// raise records err as the member's failure (the first one only) and ends the calling goroutine.
func (f *failure) raise(dir string, err *BootstrapError) {
	f.once.Do(func() {
		f.err = err
		failedMembers.Store(dir, err)
		close(f.done)
	})
	runtime.Goexit()
}

// Failed is closed once etcd raised a failure (lg.Fatal or lg.Panic) in the member after it
// started, with Member.ContainFailures set: the member no longer serves, and cannot be stopped
// nor started again in this process (see Failure).
func (e *Etcd) Failed() <-chan struct{} {
	if e.failure == nil {
		return nil
	}
	return e.failure.done
}

// Failure is the failure Failed reports, nil before.
func (e *Etcd) Failure() error {
	if e.failure == nil {
		return nil
	}
	select {
	case <-e.failure.done:
		return fmt.Errorf("member %s failed while running: %w", e.Config().Name, e.failure.err)
	default:
		return nil
	}
}

// isolateOnFailure waits for the member's failure and then cuts it off: its client API refuses
// every request (without waiting for those in flight, which may wait forever on the goroutine
// that ended), and its client and peer listeners close, so that clients and the other members
// see it down rather than half working. It returns when the member stops normally.
func (e *Etcd) isolateOnFailure() {
	select {
	case <-e.failure.done:
	case <-e.Server.StopNotify():
		return
	}
	e.gate.close()
	for _, l := range e.Clients {
		_ = l.Close()
	}
	for _, p := range e.Peers {
		if p.Listener != nil {
			_ = p.Listener.Close()
		}
	}
}

// failedBefore returns why the member name in dir cannot start while its database is locked,
// when a failure of the member in this process keeps it open; nil otherwise.
func failedBefore(name, dir string) error {
	f, ok := failedMembers.Load(dir)
	if !ok {
		return nil
	}
	return fmt.Errorf("member %s cannot start again in this process: it failed while running (%w), and etcd keeps its database open until the process exits; restart the process once the cause is fixed", name, f.(*BootstrapError))
}
