package snapshot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	etcdutlsnapshot "go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
)

// statusChildEnv, set in the environment of a process that imports this package, makes it
// print etcdutl's snapshot status of the named file as JSON and exit, before main runs. Status
// starts the running executable this way.
const statusChildEnv = "ETCDAAS_SNAPSHOT_STATUS_OF"

// Exit codes of the status child.
const (
	childOK      = 0
	childInvalid = 3
)

func init() {
	if path := os.Getenv(statusChildEnv); path != "" {
		os.Exit(runStatusChild(path))
	}
}

// runStatusChild is the child's work: a corrupt database may panic in a bbolt goroutine and
// kill the child, never the server.
func runStatusChild(path string) int {
	st, err := etcdutlsnapshot.NewV3(zap.NewNop()).Status(path)
	if err != nil {
		fmt.Fprint(os.Stderr, err.Error())
		return childInvalid
	}
	if err := json.NewEncoder(os.Stdout).Encode(st); err != nil {
		return 1
	}
	return childOK
}

// Status runs etcdutl's snapshot status (a full integrity check of the database, its
// revision, keys and storage version) on path in a child process of the running executable,
// so that the database is never opened in this process: its memory map and the key set the
// check builds stay out of this process, and a crash on a corrupt page costs only the child.
// A database the check refuses is an *InvalidError.
func Status(ctx context.Context, path string) (*etcdutlsnapshot.Status, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding this executable to check the snapshot: %w", err)
	}
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), statusChildEnv+"="+path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &limitedBuffer{max: 64 * 1024, buf: &stderr}
	err = cmd.Run()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("checking the snapshot: %w", ctx.Err())
	}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		st := &etcdutlsnapshot.Status{}
		if err := json.Unmarshal(stdout.Bytes(), st); err != nil {
			return nil, fmt.Errorf("reading the snapshot check's answer: %w", err)
		}
		return st, nil
	case errors.As(err, &exitErr) && exitErr.ExitCode() == childInvalid:
		return nil, invalid("the snapshot's database is corrupt: %s", firstLines(stderr.String(), 5))
	case errors.As(err, &exitErr) && exitErr.ExitCode() == 2:
		// A Go panic: bbolt's reaction to some corrupt pages.
		return nil, invalid("the snapshot's database is corrupt: %s", panicMessage(stderr.String()))
	default:
		return nil, fmt.Errorf("checking the snapshot: %w: %s", err, firstLines(stderr.String(), 5))
	}
}

// panicMessage extracts the panic's message from a crashed child's stderr.
func panicMessage(stderr string) string {
	for _, line := range strings.Split(stderr, "\n") {
		if msg, ok := strings.CutPrefix(line, "panic: "); ok {
			return msg
		}
	}
	return "the database check crashed"
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(strings.TrimSpace(s), "\n", n+1)
	if len(lines) > n {
		lines = append(lines[:n], "…")
	}
	return strings.Join(lines, "; ")
}

// limitedBuffer keeps the first max bytes written to it and drops the rest, so that a child
// printing a huge error cannot grow this process.
type limitedBuffer struct {
	max int
	buf *bytes.Buffer
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.buf.Len(); room > 0 {
		l.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}
