package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/procfs"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/etcdaas/etcdaas/pkg/watchbuffer"
	"github.com/etcdaas/etcdaas/test/e2e/framework"
	"github.com/etcdaas/etcdaas/test/fanout"
	"github.com/etcdaas/etcdaas/test/testenv"
)

// WatchersEnv sets the number of watchers of BenchmarkWatchFanOut (default 1000).
const WatchersEnv = "ETCDAAS_BENCH_WATCHERS"

// fanoutRow is one line of the watch fan-out figures.
type fanoutRow struct {
	name   string
	res    fanout.Result
	forced float64
	rssMiB float64
	cpu    float64
}

// The watch fan-out benchmarks open N watches (ETCDAAS_BENCH_WATCHERS, default 1000) on one
// namespace through one client, create 200 ETCDInstances there from 8 clients, and report
// the watchers that received every event, the watchers the server force-closed and the
// server's RSS while the watches are open.

// BenchmarkWatchFanOutStandalone runs the scenario against etcdaas-apiserver --standalone
// reached directly, with --watch-buffer-size=0 (only the watch cache's own buffer, as before
// the per-watch queue) and with the default, one after the other in the same run.
func BenchmarkWatchFanOutStandalone(b *testing.B) {
	scenario := fanoutScenario(b)
	bin := framework.BuildCommands(b)
	var rows []fanoutRow
	for _, size := range []int{0, watchbuffer.DefaultSize} {
		proc, config := startStandalone(b, bin, size)
		name := fmt.Sprintf("standalone-direct/watch-buffer-size=%d", size)
		rows = append(rows, benchFanOut(b, name, proc.Pid(), scenario, config, config, config, nil))
		if err := proc.Stop(); err != nil {
			b.Error(err)
		}
	}
	if err := writeFanOutFigures("standalone", rows, scenario.Watchers); err != nil {
		b.Error(err)
	}
}

// BenchmarkWatchFanOutAggregated runs the scenario against the aggregated etcdaas-apiserver
// of the e2e control plane (without the controller), reached directly and through
// kube-apiserver's aggregator.
func BenchmarkWatchFanOutAggregated(b *testing.B) {
	scenario := fanoutScenario(b)
	c := framework.StartClusterWithoutController(b)
	direct := rest.CopyConfig(c.AdminConfig)
	direct.Host = "https://" + framework.HostPort(c.EtcdaasPort)
	direct.CAData, direct.CAFile = c.PKI.ServingCA.CertPEM, ""
	direct.ServerName = "localhost"
	pid := c.Process("etcdaas-apiserver").Pid()
	createNamespace := func(ctx context.Context, name string) error {
		_, err := c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		return err
	}
	rows := []fanoutRow{
		benchFanOut(b, "aggregated-direct", pid, scenario, direct, direct, direct, createNamespace),
		benchFanOut(b, "aggregated-through-kube-apiserver", pid, scenario, c.AdminConfig, c.AdminConfig, direct, createNamespace),
	}
	if err := writeFanOutFigures("aggregated", rows, scenario.Watchers); err != nil {
		b.Error(err)
	}
}

// fanoutScenario is the scenario with ETCDAAS_BENCH_WATCHERS watchers.
func fanoutScenario(b *testing.B) fanout.Scenario {
	b.Helper()
	watchers := 1000
	if v := os.Getenv(WatchersEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("%s=%q is not a positive number", WatchersEnv, v)
		}
		watchers = n
	}
	return fanout.Scenario{Watchers: watchers, Objects: 200, Creators: 8, Deadline: 5 * time.Minute}
}

// benchFanOut runs the scenario as the sub-benchmark name and reports its figures.
func benchFanOut(b *testing.B, name string, pid int, s fanout.Scenario, watchConfig, createConfig, metricsConfig *rest.Config,
	createNamespace func(ctx context.Context, name string) error) fanoutRow {
	var row fanoutRow
	b.Run(name, func(b *testing.B) {
		for b.Loop() {
			row = runFanOut(b, name, pid, s, watchConfig, createConfig, metricsConfig, createNamespace)
		}
		b.ReportMetric(float64(row.res.Complete), "watchers-complete")
		b.ReportMetric(row.forced, "forced-closes")
		b.ReportMetric(row.rssMiB, "server-RSS-MiB")
		b.ReportMetric(row.cpu, "server-CPU-s")
	})
	return row
}

// runFanOut runs the scenario once in a fresh namespace.
func runFanOut(b *testing.B, name string, pid int, s fanout.Scenario, watchConfig, createConfig, metricsConfig *rest.Config,
	createNamespace func(ctx context.Context, name string) error) fanoutRow {
	b.Helper()
	ctx := b.Context()
	namespace := "fanout-" + rand.String(6)
	if createNamespace != nil {
		if err := createNamespace(ctx, namespace); err != nil {
			b.Fatal(err)
		}
	}
	before, err := fanout.TerminatedWatchers(ctx, metricsConfig)
	if err != nil {
		b.Fatal(err)
	}
	row := fanoutRow{name: name}
	cpuBefore, err := cpuSeconds(pid)
	if err != nil {
		b.Fatal(err)
	}
	s.WhileOpen = func(context.Context) {
		row.rssMiB, err = rssMiB(pid)
		if err != nil {
			b.Error(err)
		}
	}
	row.res, err = fanout.Run(ctx, watchConfig, createConfig, namespace, s)
	if err != nil {
		b.Fatal(err)
	}
	after, err := fanout.TerminatedWatchers(ctx, metricsConfig)
	if err != nil {
		b.Fatal(err)
	}
	row.forced = after - before
	cpuAfter, err := cpuSeconds(pid)
	if err != nil {
		b.Fatal(err)
	}
	row.cpu = cpuAfter - cpuBefore
	b.Logf("%s: %s; server force-closed %v; server RSS %.0f MiB with the watches open; server CPU %.1f s", name, row.res, row.forced, row.rssMiB, row.cpu)
	return row
}

// startStandalone runs etcdaas-apiserver --standalone without the in-process controller,
// with --watch-buffer-size=size, and returns it once /readyz answers.
func startStandalone(b *testing.B, bin string, size int) (*framework.Process, *rest.Config) {
	b.Helper()
	dir := b.TempDir()
	ports, err := framework.FreePorts(1)
	if err != nil {
		b.Fatal(err)
	}
	proc, err := framework.StartProcess("etcdaas-apiserver", dir, filepath.Join(bin, framework.APIServerCommand),
		"--standalone", "--data-dir="+filepath.Join(dir, "data"), "--controller=false",
		"--secure-port="+strconv.Itoa(ports[0]), "--watch-buffer-size="+strconv.Itoa(size))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = proc.Stop() })
	kubeconfig := filepath.Join(dir, "data", "kubeconfig")
	var config *rest.Config
	err = framework.Poll(b.Context(), 200*time.Millisecond, 2*time.Minute, "the standalone server's /readyz", func(ctx context.Context) (bool, error) {
		if exited, err := proc.Exited(); exited {
			return false, fmt.Errorf("etcdaas-apiserver exited: %v (log %s)", err, proc.LogPath)
		}
		if config, err = clientcmd.BuildConfigFromFlags("", kubeconfig); err != nil {
			return false, err
		}
		client, err := rest.HTTPClientFor(config)
		if err != nil {
			return false, err
		}
		resp, err := client.Get(config.Host + "/readyz")
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == 200, nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return proc, config
}

// rssMiB is the resident memory of process pid.
func rssMiB(pid int) (float64, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, err
	}
	st, err := p.Stat()
	if err != nil {
		return 0, err
	}
	return float64(st.ResidentMemory()) / (1 << 20), nil
}

// cpuSeconds is the user and system CPU time process pid has used.
func cpuSeconds(pid int) (float64, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, err
	}
	st, err := p.Stat()
	if err != nil {
		return 0, err
	}
	return st.CPUTime(), nil
}

// writeFanOutFigures writes the rows to _output/bench/watch-fanout-<kind>-<watchers>.txt.
func writeFanOutFigures(kind string, rows []fanoutRow, watchers int) error {
	root, err := testenv.RepoRoot()
	if err != nil {
		return err
	}
	dir := filepath.Join(root, "_output", "bench")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "# watch fan-out, %s: %d watchers, 200 creates by 8 clients\n", time.Now().UTC().Format(time.RFC3339), watchers)
	fmt.Fprintf(&sb, "%-48s %18s %14s %14s %12s %12s %14s\n", "server", "every-event", "forced-closes", "median-events", "RSS-MiB", "CPU-s", "delivered-in")
	for _, r := range rows {
		fmt.Fprintf(&sb, "%-48s %18s %14.0f %14d %12.0f %12.1f %14s\n", r.name,
			fmt.Sprintf("%d/%d", r.res.Complete, r.res.Watchers), r.forced, r.res.MedianEvents, r.rssMiB, r.cpu, r.res.DeliveryTime.Round(100*time.Millisecond))
	}
	path := filepath.Join(dir, fmt.Sprintf("watch-fanout-%s-%d.txt", kind, watchers))
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		return err
	}
	fmt.Print(sb.String())
	fmt.Printf("written to %s\n", path)
	return nil
}
