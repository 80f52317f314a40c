package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1alpha1"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	versioned "github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned"
	"github.com/etcdaas/etcdaas/test/testenv"
)

const (
	killWriters  = 16
	stepAnnotate = "reliability.etcdaas.dev/step"
)

// killServer is etcdaas-apiserver run standalone as a subprocess on a fixed port, so that
// clients keep their address across a kill -9 and a restart.
type killServer struct {
	t                *testing.T
	bin, dataDir     string
	port, etcdClient int
	etcdPeer         int
	cmd              *exec.Cmd
}

func (s *killServer) start() time.Duration {
	s.t.Helper()
	logFile, err := os.Create(filepath.Join(s.dataDir, fmt.Sprintf("apiserver-%d.log", time.Now().UnixNano())))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { logFile.Close() })
	s.cmd = exec.Command(s.bin, "--standalone", "--data-dir", s.dataDir, "--controller=false",
		"--secure-port", strconv.Itoa(s.port),
		"--standalone-etcd-client-port", strconv.Itoa(s.etcdClient),
		"--standalone-etcd-peer-port", strconv.Itoa(s.etcdPeer))
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	start := time.Now()
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	cmd := s.cmd
	s.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	url := fmt.Sprintf("https://127.0.0.1:%d/readyz", s.port)
	for time.Since(start) < 2*time.Minute {
		if ca, err := os.ReadFile(filepath.Join(s.dataDir, "pki", "ca.crt")); err == nil {
			client, err := rest.HTTPClientFor(&rest.Config{Host: url, TLSClientConfig: rest.TLSClientConfig{CAData: ca}, Timeout: 2 * time.Second})
			if err != nil {
				s.t.Fatal(err)
			}
			if resp, err := client.Get(url); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return time.Since(start)
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("not ready within 2m; log in %s", logFile.Name())
	return 0
}

// kill9 sends SIGKILL: no shutdown hook runs, etcd gets no chance to flush.
func (s *killServer) kill9() {
	s.t.Helper()
	if err := s.cmd.Process.Kill(); err != nil {
		s.t.Fatal(err)
	}
	_ = s.cmd.Wait()
}

// ackedState is what a writer was told about one object: present with a step annotation
// and the version it was written in, or deleted.
type ackedState struct {
	present bool
	step    string
	beta    bool
}

// errorTally counts what clients saw while the server was away.
type errorTally struct {
	mu      sync.Mutex
	kinds   map[string]int
	unclean []string
	// longest is the longest time one writer went without an acknowledged write.
	longest time.Duration
}

// classify returns a short kind for an error a client may see while the server is down or
// starting, or "" for anything else (a wrong answer, not a clean failure).
func classify(err error) string {
	var netErr net.Error
	switch {
	case utilnet.IsConnectionRefused(err):
		return "connection refused"
	case utilnet.IsConnectionReset(err), utilnet.IsProbableEOF(err), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	case errors.As(err, &netErr) && netErr.Timeout():
		return "timeout"
	case apierrors.IsTooManyRequests(err):
		return "HTTP 429"
	}
	if status, ok := err.(apierrors.APIStatus); ok && status.Status().Code >= 500 {
		return fmt.Sprintf("HTTP %d", status.Status().Code)
	}
	return ""
}

func (e *errorTally) add(err error) {
	kind := classify(err)
	e.mu.Lock()
	defer e.mu.Unlock()
	if kind == "" {
		e.unclean = append(e.unclean, err.Error())
		return
	}
	e.kinds[kind]++
}

// TestKill9UnderConcurrentWriters runs 16 writers (half v1alpha1, half v1beta1) creating,
// updating and deleting their own objects against a standalone etcdaas-apiserver process,
// kills it with SIGKILL mid-load, restarts it on the same port and data directory while the
// writers retry, then kills it again once they stop. After the last restart, every
// acknowledged create, update and delete is there, every object reads back whole, and while
// the server was away the writers saw only connection errors and 5xx.
func TestKill9UnderConcurrentWriters(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a server process")
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "etcdaas-apiserver")
	build := exec.Command("go", "build", "-o", bin, "./cmd/etcdaas-apiserver")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	srv := &killServer{t: t, bin: bin, dataDir: t.TempDir(), port: freeTestPort(t), etcdClient: freeTestPort(t), etcdPeer: freeTestPort(t)}
	srv.start()

	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(srv.dataDir, "kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst, cfg.Timeout = -1, 0, 5*time.Second
	cs, err := versioned.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ns := namespace(t)

	stop := make(chan struct{})
	tally := &errorTally{kinds: map[string]int{}}
	acked := make([]map[string]ackedState, killWriters)
	var wg sync.WaitGroup
	for w := 0; w < killWriters; w++ {
		acked[w] = map[string]ackedState{}
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			runKillWriter(ctx, cs, ns, w, w%2 == 1, acked[w], tally, stop)
		}(w)
	}

	time.Sleep(3 * time.Second)
	killedAt := time.Now()
	srv.kill9()
	time.Sleep(time.Second) // clients see connection refused for a while
	ready := srv.start()
	down := time.Since(killedAt)
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatal("writers did not finish in time")
	}

	// Everything acknowledged must survive a kill with no load and no grace either.
	srv.kill9()
	srv.start()

	var creates, present, deleted int
	for w := range acked {
		for name, want := range acked[w] {
			creates++
			checkAcked(ctx, t, cs, ns, name, want)
			if want.present {
				present++
			} else {
				deleted++
			}
		}
	}
	tally.mu.Lock()
	defer tally.mu.Unlock()
	if len(tally.unclean) > 0 {
		t.Errorf("%d errors were not clean failures, first: %s", len(tally.unclean), tally.unclean[0])
	}
	t.Logf("acknowledged %d objects (%d present, %d deleted), all found after 2 kill -9; down %s (restart to /readyz %s); client errors %v; longest gap a writer saw %s",
		creates, present, deleted, down.Round(time.Millisecond), ready.Round(time.Millisecond), tally.kinds, tally.longest.Round(time.Millisecond))
	if creates < killWriters {
		t.Errorf("only %d objects acknowledged", creates)
	}
}

// runKillWriter creates, updates and (every third) deletes objects named after the writer
// until stop is closed, retrying each step until it is acknowledged. A create answered
// AlreadyExists or a delete answered NotFound after a failed attempt is the earlier attempt
// having landed.
func runKillWriter(ctx context.Context, cs *versioned.Clientset, ns string, w int, beta bool, acked map[string]ackedState, tally *errorTally, stop <-chan struct{}) {
	lastAck := time.Now()
	retry := func(op func() error, landedAnyway func(error) bool) bool {
		failed := false
		for ctx.Err() == nil {
			err := op()
			if err == nil || (failed && landedAnyway(err)) {
				tally.mu.Lock()
				if gap := time.Since(lastAck); gap > tally.longest {
					tally.longest = gap
				}
				tally.mu.Unlock()
				lastAck = time.Now()
				return true
			}
			tally.add(err)
			if classify(err) == "" {
				return false
			}
			failed = true
			time.Sleep(50 * time.Millisecond)
		}
		return false
	}
	never := func(error) bool { return false }
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		name := fmt.Sprintf("w%d-%d", w, i)
		if !retry(func() error { return createObj(ctx, cs, ns, name, beta) }, apierrors.IsAlreadyExists) {
			return
		}
		acked[name] = ackedState{present: true, step: "created", beta: beta}
		if !retry(func() error { return annotateObj(ctx, cs, ns, name, beta) }, never) {
			return
		}
		acked[name] = ackedState{present: true, step: "updated", beta: beta}
		if i%3 != 2 {
			continue
		}
		del := func() error {
			if beta {
				return cs.EtcdaasV1beta1().ETCDInstances(ns).Delete(ctx, name, metav1.DeleteOptions{})
			}
			return cs.EtcdaasV1alpha1().ETCDInstances(ns).Delete(ctx, name, metav1.DeleteOptions{})
		}
		if !retry(del, apierrors.IsNotFound) {
			return
		}
		acked[name] = ackedState{}
	}
}

func createObj(ctx context.Context, cs *versioned.Clientset, ns, name string, beta bool) error {
	meta := metav1.ObjectMeta{Name: name, Annotations: map[string]string{stepAnnotate: "created"}}
	if beta {
		_, err := cs.EtcdaasV1beta1().ETCDInstances(ns).Create(ctx, &v1beta1.ETCDInstance{
			ObjectMeta: meta, Spec: v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](3), Version: "3.6"},
		}, metav1.CreateOptions{})
		return err
	}
	_, err := cs.EtcdaasV1alpha1().ETCDInstances(ns).Create(ctx, &v1alpha1.ETCDInstance{
		ObjectMeta: meta, Spec: v1alpha1.ETCDInstanceSpec{Replicas: ptr.To[int32](1), WithTLSBundle: true},
	}, metav1.CreateOptions{})
	return err
}

// annotateObj sets the step annotation to "updated" with a JSON merge patch: idempotent, so
// a retry after an unacknowledged attempt is harmless.
func annotateObj(ctx context.Context, cs *versioned.Clientset, ns, name string, beta bool) error {
	patch := []byte(`{"metadata":{"annotations":{"` + stepAnnotate + `":"updated"}}}`)
	if beta {
		_, err := cs.EtcdaasV1beta1().ETCDInstances(ns).Patch(ctx, name, "application/merge-patch+json", patch, metav1.PatchOptions{})
		return err
	}
	_, err := cs.EtcdaasV1alpha1().ETCDInstances(ns).Patch(ctx, name, "application/merge-patch+json", patch, metav1.PatchOptions{})
	return err
}

// checkAcked reads one object back and compares it with what its writer was told.
func checkAcked(ctx context.Context, t *testing.T, cs *versioned.Clientset, ns, name string, want ackedState) {
	t.Helper()
	obj, err := cs.EtcdaasV1beta1().ETCDInstances(ns).Get(ctx, name, metav1.GetOptions{})
	if !want.present {
		if !apierrors.IsNotFound(err) {
			t.Errorf("%s: acknowledged delete, but Get: %v", name, err)
		}
		return
	}
	if err != nil {
		t.Errorf("%s: acknowledged %s, but Get: %v", name, want.step, err)
		return
	}
	if got := obj.Annotations[stepAnnotate]; got != want.step && !(want.step == "created" && got == "updated") {
		t.Errorf("%s: acknowledged %s, found step %q", name, want.step, got)
	}
	wantReplicas, wantVersion, wantTLS := int32(1), etcdaas.DefaultVersion, true
	if want.beta {
		wantReplicas, wantVersion, wantTLS = 3, "3.6", false
	}
	if obj.Spec.Replicas == nil || *obj.Spec.Replicas != wantReplicas || obj.Spec.Version != wantVersion || (obj.Spec.TLS != nil && obj.Spec.TLS.Enabled) != wantTLS {
		t.Errorf("%s: half-written spec %+v", name, obj.Spec)
	}
}
