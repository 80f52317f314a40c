package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/etcdaas/etcdaas/pkg/snapshot/snapshottest"
)

// pluginEnv makes the test binary run main, so that the tests run the plugin's real
// executable: its signal handling, which no in-process test reaches.
const pluginEnv = "KUBECTL_ETCDAAS_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(pluginEnv) != "" {
		main()
		return
	}
	os.Exit(m.Run())
}

// stallingBackup serves the backup subresource: the first 64 KiB of a snapshot, then
// nothing until the client goes away or a minute passes, as a server streaming a large
// snapshot over a slow link does.
func stallingBackup(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/namespaces/team/etcdinstances/my-etcd/backup") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(make([]byte, 64<<10))
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(time.Minute):
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// writeKubeconfig writes a kubeconfig for server, namespace team.
func writeKubeconfig(t *testing.T, server string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	config := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: %q}
users:
- name: test
  user: {token: test-token}
contexts:
- name: test
  context: {cluster: test, user: test, namespace: team}
current-context: test
`, server)
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestBackupStoppedBySignal runs `kubectl etcdaas backup my-etcd -o FILE`, waits for its part
// file, and sends a signal: the terminal closed (SIGHUP), Ctrl-C (SIGINT) or kill (SIGTERM).
// The plugin must stop with an error that says why and leave neither FILE nor FILE.NNN.part.
// SIGHUP used to kill it outright, the part file left behind.
func TestBackupStoppedBySignal(t *testing.T) {
	kubeconfig := writeKubeconfig(t, stallingBackup(t).URL)
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "my-etcd.db")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "--kubeconfig", kubeconfig, "backup", "my-etcd", "-o", file)
			stderr := signalMidBackup(t, cmd, file, sig)
			err := cmd.Wait()
			if ctx.Err() != nil {
				t.Fatalf("the plugin did not stop within 30s of %s", sig)
			}
			exit, ok := err.(*exec.ExitError)
			if !ok || exit.ExitCode() != 1 {
				t.Errorf("exit: %v, want exit code 1 (stderr %q)", err, stderr.String())
			}
			if !strings.Contains(stderr.String(), "backup of team/my-etcd") || !strings.Contains(stderr.String(), sig.String()+" signal received") {
				t.Errorf("stderr %q does not say the backup stopped on %s", stderr.String(), sig)
			}
			t.Logf("stderr: %s", stderr.String())
			if _, err := os.Stat(file); !os.IsNotExist(err) {
				t.Errorf("%s exists after the backup stopped (err=%v)", file, err)
			}
			if parts, _ := filepath.Glob(file + ".*.part"); len(parts) != 0 {
				t.Errorf("part files left behind: %v", parts)
			}
		})
	}
}

// signalMidBackup starts cmd, a run of the plugin's backup to file, waits until the backup
// is receiving the snapshot (waitForPartFile) and sends it sig. It returns the plugin's
// standard error, filled as it runs.
func signalMidBackup(t *testing.T, cmd *exec.Cmd, file string, sig syscall.Signal) *bytes.Buffer {
	t.Helper()
	cmd.Env = append(os.Environ(), pluginEnv+"=1")
	stderr := &bytes.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitForPartFile(t, file)
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	return stderr
}

// waitForPartFile waits up to 20s for a non-empty part file of file: the backup is then
// receiving the snapshot.
func waitForPartFile(t *testing.T, file string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		parts, _ := filepath.Glob(file + ".*.part")
		for _, p := range parts {
			if info, err := os.Stat(p); err == nil && info.Size() > 0 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no part file of %s within 20s", file)
}

// TestBackupUnderNohupSurvivesHangup runs `kubectl etcdaas backup` as nohup does, with
// SIGHUP ignored, sends it a hangup halfway through the snapshot (the terminal closed, the
// ssh session dropped) and lets the server send the rest: the backup must go on and save
// FILE, as nohup promises. Asking for SIGHUP used to undo the ignore, so the hangup
// cancelled the backup that nohup was run to keep alive.
func TestBackupUnderNohupSurvivesHangup(t *testing.T) {
	snap, err := os.ReadFile(snapshottest.Make(t, t.TempDir(), "snap.db", map[string]string{"k": "v"}))
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(snap[:len(snap)/2])
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			return
		case <-release:
		}
		_, _ = w.Write(snap[len(snap)/2:])
	}))
	t.Cleanup(srv.Close)
	kubeconfig := writeKubeconfig(t, srv.URL)
	file := filepath.Join(t.TempDir(), "my-etcd.db")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The shell ignores SIGHUP and execs the plugin, which inherits the ignore: nohup's way.
	cmd := exec.CommandContext(ctx, "sh", "-c", `trap "" HUP; exec "$@"`, "sh",
		os.Args[0], "--kubeconfig", kubeconfig, "backup", "my-etcd", "-o", file)
	stderr := signalMidBackup(t, cmd, file, syscall.SIGHUP)
	time.Sleep(500 * time.Millisecond) // time for a hangup that is not ignored to stop it
	close(release)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the backup run under nohup stopped on a hangup: %v (stderr %q)", err, stderr.String())
	}
	if got, err := os.ReadFile(file); err != nil || !bytes.Equal(got, snap) {
		t.Errorf("%s: %d bytes (err=%v), want the %d-byte snapshot", file, len(got), err, len(snap))
	}
}
