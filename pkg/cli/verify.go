package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
)

// snapshotVerifierEnv, set in a process's environment, makes Main check the snapshot file
// it names and exit instead of running the plugin: the parent's verifier child.
const snapshotVerifierEnv = "KUBECTL_ETCDAAS_VERIFY_SNAPSHOT"

// verifyFunc checks a snapshot file as `etcdutl snapshot status` does.
type verifyFunc func(ctx context.Context, path string) (snapshot.Status, error)

// Main is the whole kubectl-etcdaas program: it runs the plugin with args and returns the
// exit code. A downloaded snapshot is checked in a child process (this executable again),
// because bbolt reports some kinds of corruption by panicking in a goroutine of its own, which
// no recover can catch: a corrupt download then fails the check instead of the plugin.
func Main(ctx context.Context, streams IOStreams, args []string) int {
	if path, ok := os.LookupEnv(snapshotVerifierEnv); ok {
		return runSnapshotVerifier(path, streams.Out, streams.ErrOut)
	}
	f := NewFactory(streams)
	f.verifySnapshot = verifyInChildProcess
	return run(ctx, f, args)
}

// runSnapshotVerifier is the child's side: the snapshot status as JSON on stdout and exit
// code 0, or the error on stderr and exit code 1 (a panic exits with 2 and its message).
func runSnapshotVerifier(path string, stdout, stderr io.Writer) int {
	status, err := snapshot.NewV3(zap.NewNop()).Status(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if err := json.NewEncoder(stdout).Encode(status); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

// verifyInChildProcess runs runSnapshotVerifier in a child process of this executable.
func verifyInChildProcess(ctx context.Context, path string) (snapshot.Status, error) {
	var status snapshot.Status
	exe, err := os.Executable()
	if err != nil {
		return status, fmt.Errorf("finding this executable to check the snapshot: %w", err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), snapshotVerifierEnv+"="+path)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return status, context.Cause(ctx)
		}
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) {
			return status, fmt.Errorf("running the snapshot check: %w", err)
		}
		return status, errors.New(childFailure(stderr.String(), exitErr.ExitCode()))
	}
	if err := json.Unmarshal(stdout.Bytes(), &status); err != nil {
		return status, fmt.Errorf("reading the snapshot check's result: %w", err)
	}
	return status, nil
}

// childFailure turns the verifier child's stderr into one message: the panic's message if
// it panicked, else what it printed.
func childFailure(stderr string, code int) string {
	for _, line := range strings.Split(stderr, "\n") {
		if msg, ok := strings.CutPrefix(line, "panic: "); ok {
			return "not a valid etcd snapshot: " + strings.TrimSpace(msg)
		}
	}
	if msg := strings.TrimSpace(stderr); msg != "" {
		return msg
	}
	return fmt.Sprintf("the snapshot check exited with code %d", code)
}

// verifyInProcess runs the check in this process, turning panics on its goroutine into
// errors. Used where no child can be started (Run inside another program).
func verifyInProcess(_ context.Context, path string) (status snapshot.Status, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("not a valid etcd snapshot: %v", r)
		}
	}()
	return snapshot.NewV3(zap.NewNop()).Status(path)
}
