package cli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
)

// A name or namespace that is not a path segment is refused before anything is sent, as
// client-go refuses it for every other command: "../x" would otherwise post the snapshot to
// another path.
func TestRestoreRefusesNamesThatAreNotPathSegments(t *testing.T) {
	s := newFakeServer(t)
	snap := filepath.Join(t.TempDir(), "snap.db")
	if err := os.WriteFile(snap, []byte("not sent"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ args, want []string }{
		{[]string{"restore", "../x", "-f", snap}, []string{`invalid resource name "../x"`}},
		{[]string{"restore", "x", "-f", snap, "-n", ".."}, []string{`invalid namespace ".."`}},
		{[]string{"restore", "a%2Fb", "-f", snap}, []string{`invalid resource name "a%2Fb"`}},
	} {
		r := s.run(t, tc.args...)
		if r.code != 1 {
			t.Errorf("%q: exit %d, want 1; stderr %q", tc.args, r.code, r.stderr)
		}
		for _, w := range tc.want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("%q: stderr %q lacks %q", tc.args, r.stderr, w)
			}
		}
	}
	if reqs := s.recorded(); len(reqs) != 0 {
		t.Errorf("requests sent: %+v", reqs)
	}
}

// TestRestoreFromStandardInput: -f - uploads the snapshot read from standard input, as
// kubectl's -f - reads a manifest, chunked since its length is unknown; the file case still
// sends its length. A path that is not a regular file says how to stream one.
func TestRestoreFromStandardInput(t *testing.T) {
	snap := testSnapshot(t)
	s := newFakeServer(t)
	var lengths []int64
	s.restore = func(w http.ResponseWriter, r *http.Request) {
		lengths = append(lengths, r.ContentLength)
		accepted := &v1beta1.ETCDInstance{TypeMeta: metav1.TypeMeta{APIVersion: "etcdaas.dev/v1beta1", Kind: "ETCDInstance"},
			ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "db"}, Status: v1beta1.ETCDInstanceStatus{Phase: v1beta1.PhaseRestoring}}
		s.writeJSON(w, http.StatusAccepted, accepted)
	}
	kubeconfig := s.kubeconfig(t, "team")
	r := runPlugin(t, string(snap), false, "--kubeconfig", kubeconfig, "restore", "db", "-f", "-", "--wait=false")
	if r.code != 0 || r.stdout != "etcdinstance.etcdaas.dev/db: restore accepted, phase Restoring\n" {
		t.Fatalf("restore -f -: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	file := filepath.Join(t.TempDir(), "snap.db")
	if err := os.WriteFile(file, snap, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := runPlugin(t, "", false, "--kubeconfig", kubeconfig, "restore", "db", "-f", file, "--wait=false"); r.code != 0 {
		t.Fatalf("restore -f FILE: exit %d, stderr %q", r.code, r.stderr)
	}
	reqs := s.recorded()
	if len(reqs) != 2 || reqs[0].Body != string(snap) || reqs[1].Body != string(snap) {
		t.Fatalf("requests %d, want two carrying the snapshot", len(reqs))
	}
	if len(lengths) != 2 || lengths[0] != -1 || lengths[1] != int64(len(snap)) {
		t.Errorf("Content-Length %v, want unknown (-1) from standard input, then %d from the file", lengths, len(snap))
	}
	r = runPlugin(t, "", false, "--kubeconfig", kubeconfig, "restore", "db", "-f", t.TempDir())
	if r.code != 1 || !strings.Contains(r.stderr, "is not a regular file (use -f - to read the snapshot from standard input)") {
		t.Errorf("restore -f DIR: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestRestoreWaitTimesOut: when the instance does not run again within --timeout, the
// command says so and that the restore goes on, rather than client-go's bare "timed out
// waiting for the condition", which reads as if the restore had failed.
func TestRestoreWaitTimesOut(t *testing.T) {
	snap := filepath.Join(t.TempDir(), "snap.db")
	if err := os.WriteFile(snap, testSnapshot(t), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newFakeServer(t)
	s.restore = func(w http.ResponseWriter, r *http.Request) {
		accepted := &v1beta1.ETCDInstance{TypeMeta: metav1.TypeMeta{APIVersion: "etcdaas.dev/v1beta1", Kind: "ETCDInstance"},
			ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "db", ResourceVersion: "7"}, Status: v1beta1.ETCDInstanceStatus{Phase: v1beta1.PhaseRestoring}}
		s.writeJSON(w, http.StatusAccepted, accepted)
	}
	// A watch on which nothing happens: the controller never gets the instance running.
	s.watch = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}
	for range 3 { // the timeout reaches the watch in more than one way
		r := s.run(t, "restore", "db", "-f", snap, "--timeout", "300ms")
		want := "error: team/db did not run again within 300ms: the restore goes on, see 'kubectl etcdaas get db'\n"
		if r.code != 1 || r.stderr != want {
			t.Fatalf("exit %d, stderr %q; want 1 and %q", r.code, r.stderr, want)
		}
	}
}

// TestRestoreStoppedBySignal: a restore stopped by a signal during the upload says which
// signal and what became of the restore, not client-go's "Unable to connect to the server:
// context canceled", which reads as if the server could not be reached.
func TestRestoreStoppedBySignal(t *testing.T) {
	snap := testSnapshot(t)
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	s := newFakeServer(t)
	var out, errOut bytes.Buffer
	// The snapshot comes from standard input, a stream the plugin is still reading when the
	// signal comes.
	stdin := io.MultiReader(bytes.NewReader(snap), signalReader{ctx: ctx, cancel: cancel, cause: errors.New("hangup signal received")})
	f := NewFactory(genericiooptions.IOStreams{In: stdin, Out: &out, ErrOut: &errOut})
	f.isTerminal = func(io.Writer) bool { return false }
	code := run(ctx, f, []string{"--kubeconfig", s.kubeconfig(t, "team"), "restore", "db", "-f", "-"})
	want := "error: restore of team/db stopped while sending the snapshot, so nothing is restored: hangup signal received\n"
	if code != 1 || errOut.String() != want {
		t.Fatalf("exit %d, stderr %q; want 1 and %q", code, errOut.String(), want)
	}
}

// signalReader cancels ctx with cause, as the plugin's signal handling does, then blocks as
// standard input does when nothing more comes, until ctx is done.
type signalReader struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	cause  error
}

func (r signalReader) Read([]byte) (int, error) {
	r.cancel(r.cause)
	<-r.ctx.Done()
	return 0, io.ErrUnexpectedEOF
}
