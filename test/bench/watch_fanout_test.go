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
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/etcdaas/etcdaas/pkg/watchbuffer"
	"github.com/etcdaas/etcdaas/test/e2e/framework"
	"github.com/etcdaas/etcdaas/test/fanout"
)

// WatchersEnv sets the number of watchers of BenchmarkWatchFanOut (default 1000).
const WatchersEnv = "ETCDAAS_BENCH_WATCHERS"

// fanoutRow is one line of the watch fan-out figures.
type fanoutRow struct {
	name      string
	res       fanout.Result
	forced    float64
	rssMiB    float64
	serverPID int
}

// BenchmarkWatchFanOut opens N watches (ETCDAAS_BENCH_WATCHERS, default 1000) on one
// namespace through one client, creates 200 ETCDInstances there from 8 clients, and reports
// the watchers that received every event, the watchers the server force-closed and the
// server's RSS while the watches are open. Peers in the same run:
//   - standalone etcdaas-apiserver reached directly, with --watch-buffer-size=0 (only the
//     watch cache's own buffer, as before the per-watch queue) and with the default;
//   - aggregated etcdaas-apiserver (the e2e control plane, no controller) reached directly
//     and through kube-apiserver's aggregator.
func BenchmarkWatchFanOut(b *testing.B) {
	watchers := 1000
	if v := os.Getenv(WatchersEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("%s=%q is not a positive number", WatchersEnv, v)
		}
		watchers = n
	}
	scenario := fanout.Scenario{Watchers: watchers, Objects: 200, Creators: 8, Deadline: 5 * time.Minute}
	var rows []fanoutRow
	run := func(name string, pid int, watchConfig, createConfig, metricsConfig *rest.Config) {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				row := runFanOut(b, name, pid, scenario, watchConfig, createConfig, metricsConfig)
				rows = append(rows, row)
				b.ReportMetric(float64(row.res.Complete), "watchers-complete")
				b.ReportMetric(row.forced, "forced-closes")
				b.ReportMetric(row.rssMiB, "server-RSS-MiB")
			}
		})
	}

	bin := framework.BuildCommands(b)
	for _, size := range []int{0, watchbuffer.DefaultSize} {
		proc, config := startStandalone(b, bin, size)
		run(fmt.Sprintf("standalone-direct/watch-buffer-size=%d", size), proc.Pid(), config, config, config)
		if err := proc.Stop(); err != nil {
			b.Error(err)
		}
	}

	c := framework.StartClusterWithoutController(b)
	direct := rest.CopyConfig(c.AdminConfig)
	direct.Host = "https://" + framework.HostPort(c.EtcdaasPort)
	direct.CAData, direct.CAFile = c.PKI.ServingCA.CertPEM, ""
	direct.ServerName = "localhost"
	pid := c.Process("etcdaas-apiserver").Pid()
	run("aggregated-direct", pid, direct, direct, direct)
	run("aggregated-through-kube-apiserver", pid, c.AdminConfig, c.AdminConfig, direct)

	if err := writeFanOutFigures(rows, watchers); err != nil {
		b.Error(err)
	}
}

// runFanOut runs the scenario once in a fresh namespace.
func runFanOut(b *testing.B, name string, pid int, s fanout.Scenario, watchConfig, createConfig, metricsConfig *rest.Config) fanoutRow {
	b.Helper()
	ctx := b.Context()
	before, err := fanout.TerminatedWatchers(ctx, metricsConfig)
	if err != nil {
		b.Fatal(err)
	}
	row := fanoutRow{name: name, serverPID: pid}
	s.WhileOpen = func(context.Context) {
		row.rssMiB, err = rssMiB(pid)
		if err != nil {
			b.Error(err)
		}
	}
	row.res, err = fanout.Run(ctx, watchConfig, createConfig, "fanout-"+rand.String(6), s)
	if err != nil {
		b.Fatal(err)
	}
	after, err := fanout.TerminatedWatchers(ctx, metricsConfig)
	if err != nil {
		b.Fatal(err)
	}
	row.forced = after - before
	b.Logf("%s: %s; server force-closed %v; server RSS %.0f MiB with the watches open", name, row.res, row.forced, row.rssMiB)
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

// writeFanOutFigures writes the rows to _output/bench/watch-fanout-<watchers>.txt.
func writeFanOutFigures(rows []fanoutRow, watchers int) error {
	root, err := framework.RepoRoot()
	if err != nil {
		return err
	}
	dir := filepath.Join(root, "_output", "bench")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "# watch fan-out, %s: %d watchers, 200 creates by 8 clients\n", time.Now().UTC().Format(time.RFC3339), watchers)
	fmt.Fprintf(&sb, "%-48s %18s %14s %14s %12s %14s\n", "server", "every-event", "forced-closes", "median-events", "RSS-MiB", "delivered-in")
	for _, r := range rows {
		fmt.Fprintf(&sb, "%-48s %18s %14.0f %14d %12.0f %14s\n", r.name,
			fmt.Sprintf("%d/%d", r.res.Complete, r.res.Watchers), r.forced, r.res.MedianEvents, r.rssMiB, r.res.DeliveryTime.Round(100*time.Millisecond))
	}
	path := filepath.Join(dir, fmt.Sprintf("watch-fanout-%d.txt", watchers))
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		return err
	}
	fmt.Print(sb.String())
	fmt.Printf("written to %s\n", path)
	return nil
}
