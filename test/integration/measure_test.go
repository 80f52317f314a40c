package integration

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	versioned "github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned"
	"github.com/etcdaas/etcdaas/test/testenv"
)

// TestMeasureStandalone builds etcdaas-apiserver, runs it standalone (without the in-process
// controller) as its own process and reports the time to /readyz, the RSS when idle and with ETCDAAS_MEASURE_OBJECTS objects
// (default 10000), and the restart time with them. It runs only with ETCDAAS_MEASURE=1: it
// takes minutes and measures rather than checks, though it fails on any error.
func TestMeasureStandalone(t *testing.T) {
	if os.Getenv("ETCDAAS_MEASURE") != "1" {
		t.Skip("set ETCDAAS_MEASURE=1 to measure start time and memory")
	}
	objects := measureObjects(t)
	bin := buildAPIServer(t)
	dataDir := t.TempDir()

	proc, ready := startProcess(t, bin, dataDir)
	t.Logf("cold start (new data dir, PKI generated) to /readyz: %s", ready.Round(time.Millisecond))
	time.Sleep(5 * time.Second)
	t.Logf("RSS idle: %s", rss(t, proc.Process.Pid))

	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(dataDir, "kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = -1, 0
	cs, err := versioned.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	createObjects(t, ctx, cs, objects)
	listStart := time.Now()
	list, err := cs.EtcdaasV1beta1().ETCDInstances("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != objects {
		t.Fatalf("listed %d objects, want %d", len(list.Items), objects)
	}
	t.Logf("listed %d objects in %s", len(list.Items), time.Since(listStart).Round(time.Millisecond))
	time.Sleep(5 * time.Second)
	t.Logf("RSS with %d objects: %s", objects, rss(t, proc.Process.Pid))

	stopProcess(t, proc)
	proc, ready = startProcess(t, bin, dataDir)
	t.Logf("warm restart with %d objects to /readyz: %s", objects, ready.Round(time.Millisecond))
	time.Sleep(5 * time.Second)
	t.Logf("RSS after restart with %d objects (watch cache filled): %s", objects, rss(t, proc.Process.Pid))
	stopProcess(t, proc)
}

// measureObjects is how many objects to create: $ETCDAAS_MEASURE_OBJECTS, 10000 by default.
func measureObjects(t *testing.T) int {
	t.Helper()
	objects := 10000
	if v := os.Getenv("ETCDAAS_MEASURE_OBJECTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatal(err)
		}
		objects = n
	}
	return objects
}

// buildAPIServer builds etcdaas-apiserver into a temporary directory and returns its path.
func buildAPIServer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "etcdaas-apiserver")
	build := exec.Command("go", "build", "-o", bin, "./cmd/etcdaas-apiserver")
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// createObjects creates objects instances (spread over 20 namespaces) with 16 writers, and
// logs the rate.
func createObjects(t *testing.T, ctx context.Context, cs *versioned.Clientset, objects int) {
	t.Helper()
	start := time.Now()
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	var firstErr sync.Once
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(objects) {
					return
				}
				_, err := cs.EtcdaasV1beta1().ETCDInstances(fmt.Sprintf("ns-%d", i%20)).Create(ctx, &v1beta1.ETCDInstance{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("db-%d", i), Labels: map[string]string{"bench": "yes"}},
					Spec:       v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](3)},
				}, metav1.CreateOptions{})
				if err != nil {
					failed.Add(1)
					firstErr.Do(func() { t.Errorf("create %d: %v", i, err) })
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d creates failed", failed.Load())
	}
	t.Logf("created %d objects in %s (%.0f/s)", objects, time.Since(start).Round(time.Millisecond), float64(objects)/time.Since(start).Seconds())
}

// startProcess runs the binary standalone on a free port and waits for /readyz.
func startProcess(t *testing.T, bin, dataDir string) (*exec.Cmd, time.Duration) {
	t.Helper()
	port := freeTestPort(t)
	logFile, err := os.Create(filepath.Join(dataDir, fmt.Sprintf("apiserver-%d.log", time.Now().UnixNano())))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logFile.Close() })
	args := []string{"--standalone", "--data-dir", dataDir, "--secure-port", strconv.Itoa(port)}
	// Measure the API server and its storage alone: with the in-process controller, 10k
	// instances would be 10k etcd clusters.
	if help, _ := exec.Command(bin, "--help").CombinedOutput(); strings.Contains(string(help), "--controller ") {
		args = append(args, "--controller=false")
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	url := fmt.Sprintf("https://127.0.0.1:%d/readyz", port)
	for time.Since(start) < 2*time.Minute {
		if ca, err := os.ReadFile(filepath.Join(dataDir, "pki", "ca.crt")); err == nil {
			client, err := rest.HTTPClientFor(&rest.Config{Host: url, TLSClientConfig: rest.TLSClientConfig{CAData: ca}})
			if err != nil {
				t.Fatal(err)
			}
			if resp, err := client.Get(url); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return cmd, time.Since(start)
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("not ready within 2m; log in %s", logFile.Name())
	return nil, 0
}

func stopProcess(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	t.Logf("stopped on SIGTERM in %s", time.Since(start).Round(time.Millisecond))
}

// rss reads the resident set size (and its peak) of a process from /proc.
func rss(t *testing.T, pid int) string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cur, peak string
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		switch {
		case strings.HasPrefix(line, "VmRSS:"):
			cur = strings.TrimSpace(strings.TrimPrefix(line, "VmRSS:"))
		case strings.HasPrefix(line, "VmHWM:"):
			peak = strings.TrimSpace(strings.TrimPrefix(line, "VmHWM:"))
		}
	}
	return fmt.Sprintf("%s (peak %s)", cur, peak)
}
