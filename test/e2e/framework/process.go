package framework

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// StopTimeout is how long Stop waits after SIGTERM before it kills the process group,
// unless the process's GracePeriod says otherwise.
const StopTimeout = 15 * time.Second

// ErrKilled is returned by Stop when the process did not end within its grace period after
// SIGTERM and was killed.
var ErrKilled = errors.New("killed after the grace period")

// Process is a child process in a process group of its own, logging to a file.
type Process struct {
	// Name identifies the process in logs and errors.
	Name string
	// LogPath is the file receiving the process's stdout and stderr.
	LogPath string
	// GracePeriod is how long Stop waits after SIGTERM; zero means StopTimeout.
	GracePeriod time.Duration

	cmd     *exec.Cmd
	logFile *os.File
	done    chan struct{}

	mu      sync.Mutex
	waitErr error
	stopped bool
}

// StartProcess starts bin with args in its own process group, appending its output to
// logDir/name.log. The process is killed if the test binary dies.
func StartProcess(name, logDir, bin string, args ...string) (*Process, error) {
	return StartProcessWithEnv(name, logDir, nil, bin, args...)
}

// StartProcessWithEnv is StartProcess with env (KEY=value) added to the environment.
func StartProcessWithEnv(name, logDir string, env []string, bin string, args ...string) (*Process, error) {
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(f, "==== %s %s %q\n", time.Now().UTC().Format(time.RFC3339), bin, args)
	cmd := exec.Command(bin, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &Process{Name: name, LogPath: logPath, cmd: cmd, logFile: f, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return true, p.waitErr
	default:
		return false, nil
	}
}

// Stop sends SIGTERM to the process group, waits up to its grace period, then sends SIGKILL. It
// returns an error when the process had to be killed or ended with a failure before Stop.
// Calling it again is a no-op.
func (p *Process) Stop() error {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		<-p.done
		return nil
	}
	p.stopped = true
	p.mu.Unlock()

	if exited, err := p.Exited(); exited {
		if err != nil {
			return fmt.Errorf("%s had exited before stop: %w", p.Name, err)
		}
		return nil
	}
	grace := p.GracePeriod
	if grace == 0 {
		grace = StopTimeout
	}
	pgid := -p.cmd.Process.Pid
	_ = syscall.Kill(pgid, syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	_ = syscall.Kill(pgid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		return fmt.Errorf("%s (pid %d) survived SIGKILL", p.Name, p.cmd.Process.Pid)
	}
	return fmt.Errorf("%s did not stop within %s of SIGTERM: %w", p.Name, grace, ErrKilled)
}

// Kill sends SIGKILL to the process group and waits for the process to end.
func (p *Process) Kill() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Signal sends sig to the process group: SIGSTOP freezes it, SIGCONT lets it go on.
func (p *Process) Signal(sig syscall.Signal) error {
	return syscall.Kill(-p.cmd.Process.Pid, sig)
}

// Tail returns the last n lines of the process's log.
func (p *Process) Tail(n int) string {
	return TailFile(p.LogPath, n)
}

// TailFile returns the last n lines of the file at path, or a note why it cannot.
func TailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	data = bytes.TrimRight(data, "\n")
	lines := bytes.Split(data, []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// ErrExited is returned by waits when the process they wait for has ended.
var ErrExited = errors.New("process exited")
