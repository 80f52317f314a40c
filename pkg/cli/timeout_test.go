package cli

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
)

// TestNegativeTimeoutIsRefusedBeforeActing: restore, recover, defrag and delete act at once
// and only then wait. A negative --timeout used to let them act (a restore replaced the
// instance's data) and then fail at once, "did not run again within -1s", exit 1. It is a
// usage error now, and nothing is sent.
func TestNegativeTimeoutIsRefusedBeforeActing(t *testing.T) {
	snap := filepath.Join(t.TempDir(), "snap.db")
	if err := os.WriteFile(snap, testSnapshot(t), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newFakeServer(t)
	s.add(quorumLost("team", "db"))
	s.serveDefrag(false)
	s.serveRecover(true)
	s.restore = func(w http.ResponseWriter, _ *http.Request) {
		t.Error("the snapshot was uploaded")
		w.WriteHeader(http.StatusInternalServerError)
	}
	for _, args := range [][]string{
		{"restore", "db", "-f", snap, "--timeout=-1s"},
		{"recover", "db", "--timeout=-1s"},
		{"defrag", "db", "--timeout=-1s"},
		{"delete", "db", "--timeout=-1s"},
	} {
		r := s.run(t, args...)
		want := "error: --timeout must not be negative (0 waits forever), got -1s\n" +
			"See 'kubectl etcdaas " + args[0] + " -h' for help and examples\n"
		if r.code != 1 || r.stderr != want {
			t.Errorf("%q: exit %d, stderr %q; want 1 and %q", args, r.code, r.stderr, want)
		}
	}
	for _, req := range s.recorded() {
		t.Errorf("request sent: %s %s", req.Method, req.Path)
	}
}

// TestZeroTimeoutWaitsForever: --timeout=0 waits without a limit, as it does for delete. It
// used to end the wait of restore, recover and defrag at once, reporting that the instance
// "did not run again within 0s" (exit 1) after the request had been accepted.
func TestZeroTimeoutWaitsForever(t *testing.T) {
	recoverPollInterval, defragPollInterval = 10*time.Millisecond, 10*time.Millisecond
	s := newFakeServer(t)
	s.add(quorumLost("team", "db"))
	s.serveRecover(true)
	r := s.run(t, "recover", "db", "--timeout=0")
	if r.code != 0 || !strings.Contains(r.stdout, "etcdinstance.etcdaas.dev/db recovered: 3/3 members ready") {
		t.Errorf("recover: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	s.serveDefrag(false)
	r = s.run(t, "defrag", "db", "--timeout=0")
	if r.code != 0 || !strings.Contains(r.stdout, "etcdinstance.etcdaas.dev/db defragmented") {
		t.Errorf("defrag: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	snap := filepath.Join(t.TempDir(), "snap.db")
	if err := os.WriteFile(snap, testSnapshot(t), 0o600); err != nil {
		t.Fatal(err)
	}
	s.serveRestoreThenRun(t, 50*time.Millisecond)
	r = s.run(t, "restore", "db", "-f", snap, "--timeout=0")
	if r.code != 0 || !strings.Contains(r.stdout, "etcdinstance.etcdaas.dev/db restored: 3/3 members ready") {
		t.Errorf("restore: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

// serveRestoreThenRun accepts a restore of team/db and has the watch report it restoring,
// then, after delay, running again, as the controller does.
func (s *fakeServer) serveRestoreThenRun(t *testing.T, delay time.Duration) {
	restoring := instance("team", "db", 3)
	restoring.TypeMeta = metav1.TypeMeta{APIVersion: "etcdaas.dev/v1beta1", Kind: "ETCDInstance"}
	restoring.UID, restoring.ResourceVersion = "uid-db", "7"
	restoring.Status.Phase = v1beta1.PhaseRestoring
	meta.SetStatusCondition(&restoring.Status.Conditions, metav1.Condition{Type: etcdaas.ConditionProgressing, Status: metav1.ConditionTrue, Reason: "Restoring"})
	running := restoring.DeepCopy()
	running.ResourceVersion, running.Status.Phase = "8", v1beta1.PhaseRunning
	s.restore = func(w http.ResponseWriter, _ *http.Request) { s.writeJSON(w, http.StatusAccepted, restoring) }
	s.watch = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		for i, in := range []*v1beta1.ETCDInstance{restoring, running} {
			if i > 0 {
				time.Sleep(delay)
			}
			raw, err := json.Marshal(in)
			if err != nil {
				t.Error(err)
				return
			}
			if err := json.NewEncoder(w).Encode(metav1.WatchEvent{Type: "MODIFIED", Object: runtime.RawExtension{Raw: raw}}); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
		<-r.Context().Done()
	}
}
