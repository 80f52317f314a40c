package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend/local"
	"github.com/etcdaas/etcdaas/pkg/snapshot/snapshottest"
	"github.com/etcdaas/etcdaas/test/integration/framework"
)

// restoreResponse is the answer to a POST of the restore subresource.
type restoreResponse struct {
	code     int
	body     []byte
	instance *v1beta1.ETCDInstance
}

// postRestore POSTs body to the restore subresource as application/octet-stream; a negative
// size sends it chunked.
func (e *ctlEnv) postRestore(ns, name string, body io.Reader, size int64) restoreResponse {
	e.t.Helper()
	return e.postRestoreAs(ns, name, "application/octet-stream", body, size)
}

// postRestoreAs is postRestore with the given Content-Type (none when empty).
func (e *ctlEnv) postRestoreAs(ns, name, contentType string, body io.Reader, size int64) restoreResponse {
	e.t.Helper()
	cfg := e.srv.Config()
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	url := fmt.Sprintf("%s/apis/etcdaas.dev/v1beta1/namespaces/%s/etcdinstances/%s/restore", cfg.Host, ns, name)
	req, err := http.NewRequest(http.MethodPost, url, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.ContentLength = size
	if size < 0 {
		req.ContentLength = -1
		req.TransferEncoding = []string{"chunked"}
	}
	resp, err := hc.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	out := restoreResponse{code: resp.StatusCode}
	if out.body, err = io.ReadAll(resp.Body); err != nil {
		e.t.Fatal(err)
	}
	if resp.StatusCode == http.StatusAccepted {
		out.instance = &v1beta1.ETCDInstance{}
		if err := json.Unmarshal(out.body, out.instance); err != nil {
			e.t.Fatalf("decoding the answer %q: %v", out.body, err)
		}
	}
	return out
}

// postRestoreFile POSTs the file at path with its size.
func (e *ctlEnv) postRestoreFile(ns, name, path string) restoreResponse {
	e.t.Helper()
	f, err := os.Open(path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	st, err := f.Stat()
	if err != nil {
		e.t.Fatal(err)
	}
	return e.postRestore(ns, name, f, st.Size())
}

// keyValues reads every key under prefix.
func keyValues(t *testing.T, cli *clientv3.Client, prefix string) (map[string]string, int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = string(kv.Value)
	}
	return out, resp.Header.Revision
}

// restoredAndRunning waits, from the accepted restore's answer on, until the controller has
// restored the instance (the Progressing condition said Restoring) and it runs again. It
// watches instead of polling: the Restoring condition lasts one controller look (0.4 s on a
// machine at load 3), which a poll every 50 ms, delayed by a busy server, can miss; the wait
// then ran out although the restore had worked. Running alone proves nothing: a look that
// began before the restore was accepted may still write it.
func (e *ctlEnv) restoredAndRunning(accepted *v1beta1.ETCDInstance, timeout time.Duration) *v1beta1.ETCDInstance {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	instances := e.client.EtcdaasV1beta1().ETCDInstances(accepted.Namespace)
	lw := &cache.ListWatch{WatchFunc: func(opts metav1.ListOptions) (watch.Interface, error) {
		opts.FieldSelector = fields.OneTermEqualSelector("metadata.name", accepted.Name).String()
		return instances.Watch(ctx, opts)
	}}
	seen := false
	var last *v1beta1.ETCDInstance
	_, err := watchtools.Until(ctx, accepted.ResourceVersion, lw, func(ev watch.Event) (bool, error) {
		i, ok := ev.Object.(*v1beta1.ETCDInstance)
		if !ok || i.UID != accepted.UID {
			return false, nil
		}
		last = i
		if c := meta.FindStatusCondition(i.Status.Conditions, etcdaas.ConditionProgressing); c != nil && c.Reason == "Restoring" {
			seen = true
		}
		return seen && i.Status.Phase == v1beta1.PhaseRunning && i.Status.ReadyReplicas == *i.Spec.Replicas, nil
	})
	if err != nil && last != nil {
		e.t.Fatalf("%s/%s: not restored and Running within %s (Restoring seen: %v): %v; status %+v", accepted.Namespace, accepted.Name, timeout, seen, err, last.Status)
	}
	if err != nil {
		e.t.Fatalf("%s/%s: no change within %s of the restore's answer: %v", accepted.Namespace, accepted.Name, timeout, err)
	}
	return last
}

// TestRestoreRollsBackAndRefusesBadSnapshots restores a 3-member instance from a snapshot
// taken through the backup subresource after refusing a corrupt, a newer-version and an
// oversize snapshot, each with the running cluster left exactly as it was.
func TestRestoreRollsBackAndRefusesBadSnapshots(t *testing.T) {
	t.Parallel()
	e := ctlStartWith(t, local.Options{}, framework.Options{MaxRestoreSize: "2Mi"})
	ns, name := "restore", "db"
	ctx := context.Background()
	cli := e.runningClient(ns, name, 3)
	good := writeAroundABackup(t, ctx, e, cli, ns, name)
	current, revBefore := keyValues(t, cli, "/data/")

	raw := checkBadRestoresRefused(t, ctx, e, ns, name, good, current)

	start := time.Now()
	resp := e.postRestoreFile(ns, name, good)
	if resp.code != http.StatusAccepted {
		t.Fatalf("restore: %d %s", resp.code, resp.body)
	}
	if resp.instance.Status.Phase != v1beta1.PhaseRestoring {
		t.Fatalf("the answer's phase is %q, want Restoring", resp.instance.Status.Phase)
	}
	e.restoredAndRunning(resp.instance, 2*time.Minute)
	t.Logf("FIGURE restore of a %d-byte snapshot into 3 members: Running again after %s", len(raw), time.Since(start).Round(time.Millisecond))

	got, rev := keyValues(t, e.etcdClient(ns, name), "/data/")
	if len(got) != 20 || got["/data/00"] != "before" || got["/data/new"] != "" {
		t.Fatalf("after the restore: %v, want the 20 keys of the snapshot, all \"before\"", got)
	}
	if rev <= revBefore {
		t.Errorf("the revision went back from %d to %d: watchers of the old cluster would miss events", revBefore, rev)
	}
}

// writeAroundABackup writes /data/00../data/19 "before", backs ns/name up to a file, then
// writes /data/00../data/09 and /data/new "after"; it returns the backup's file.
func writeAroundABackup(t *testing.T, ctx context.Context, e *ctlEnv, cli *clientv3.Client, ns, name string) string {
	t.Helper()
	for i := range 20 {
		if _, err := cli.Put(ctx, fmt.Sprintf("/data/%02d", i), "before"); err != nil {
			t.Fatal(err)
		}
	}
	good, _, _ := e.backupToFile(ns, name)
	for i := range 10 {
		if _, err := cli.Put(ctx, fmt.Sprintf("/data/%02d", i), "after"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cli.Put(ctx, "/data/new", "after"); err != nil {
		t.Fatal(err)
	}
	return good
}

// checkBadRestoresRefused posts restores of bad snapshots (derived from good) and bad
// requests to ns/name: each gets its Status error and leaves the data (current), the phase and
// the restore state as they were. It returns good's content.
func checkBadRestoresRefused(t *testing.T, ctx context.Context, e *ctlEnv, ns, name, good string, current map[string]string) []byte {
	t.Helper()
	dir := t.TempDir()
	raw, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	corrupt := bytes.Clone(raw)
	corrupt[len(corrupt)/3] ^= 0x55
	newer := filepath.Join(dir, "newer.db")
	snapshottest.WithStorageVersion(t, good, newer, "3.99.0")
	newerData, err := os.ReadFile(newer)
	if err != nil {
		t.Fatal(err)
	}
	oversize := bytes.Repeat([]byte("x"), 3<<20)

	unchanged := func(what string) {
		t.Helper()
		got, _ := keyValues(t, e.etcdClient(ns, name), "/data/")
		if len(got) != len(current) || got["/data/00"] != "after" || got["/data/new"] != "after" {
			t.Fatalf("after the refused %s the data changed: %v", what, got)
		}
		inst, err := e.instances(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil || inst.Status.Phase != v1beta1.PhaseRunning {
			t.Fatalf("after the refused %s: phase %q, %v", what, inst.Status.Phase, err)
		}
		if _, err := os.Stat(filepath.Join(e.dir, "instances", ns, name, "restore", "pending.json")); !os.IsNotExist(err) {
			t.Fatalf("after the refused %s a restore is pending: %v", what, err)
		}
	}
	const octets = "application/octet-stream"
	for _, tc := range []struct {
		what        string
		contentType string
		body        []byte
		chunked     bool
		code        int
		message     string
	}{
		{"corrupt snapshot", octets, corrupt, false, http.StatusUnprocessableEntity, "integrity hash does not match"},
		{"newer-version snapshot", octets, newerData, false, http.StatusUnprocessableEntity, "newer than the etcd 3.7"},
		{"oversize snapshot", octets, oversize, false, http.StatusRequestEntityTooLarge, "at most 2097152"},
		{"oversize snapshot sent chunked", octets, oversize, true, http.StatusRequestEntityTooLarge, "larger than the 2097152 bytes"},
		{"empty body", octets, nil, false, http.StatusUnprocessableEntity, "no body"},
		{"snapshot sent as JSON", "application/json", raw, false, http.StatusUnsupportedMediaType, "accepted media types include: application/octet-stream"},
		{"snapshot sent form-encoded", "application/x-www-form-urlencoded", raw, false, http.StatusUnsupportedMediaType, "application/octet-stream"},
	} {
		size := int64(len(tc.body))
		if tc.chunked {
			size = -1
		}
		resp := e.postRestoreAs(ns, name, tc.contentType, bytes.NewReader(tc.body), size)
		if resp.code != tc.code || !strings.Contains(string(resp.body), tc.message) {
			t.Fatalf("%s: got %d %s, want %d with %q", tc.what, resp.code, resp.body, tc.code, tc.message)
		}
		status := metav1.Status{}
		if err := json.Unmarshal(resp.body, &status); err != nil || status.Kind != "Status" || status.Code != int32(tc.code) {
			t.Fatalf("%s: the answer is not a Status: %s (%v)", tc.what, resp.body, err)
		}
		unchanged(tc.what)
	}
	return raw
}

// TestTwoRestoresAtOnce: a second upload begins before the first is accepted, and the first
// restore runs to its end while the second is still arriving. The second is neither a 500 nor
// cut short by the end of the first: it is accepted once the first is no longer pending, and
// restored in its turn.
func TestTwoRestoresAtOnce(t *testing.T) {
	t.Parallel()
	e := ctlStart(t, local.Options{})
	ns, name := "restore-two", "db"
	ctx := context.Background()
	cli := e.runningClient(ns, name, 1)
	snaps := map[string]string{}
	for _, v := range []string{"first", "second"} {
		if _, err := cli.Put(ctx, "/k", v); err != nil {
			t.Fatal(err)
		}
		snaps[v], _, _ = e.backupToFile(ns, name)
	}
	second, err := os.ReadFile(snaps["second"])
	if err != nil {
		t.Fatal(err)
	}

	// The second upload sends half its body, then waits.
	answered, sender := startHeldRestore(t, e, ns, name, second)

	first := e.postRestoreFile(ns, name, snaps["first"])
	if first.code != http.StatusAccepted {
		t.Fatalf("first restore: %d %s", first.code, first.body)
	}
	e.restoredAndRunning(first.instance, 2*time.Minute)
	if got, _ := keyValues(t, e.etcdClient(ns, name), "/k"); got["/k"] != "first" {
		t.Fatalf("after the first restore /k = %q, want %q", got["/k"], "first")
	}

	if _, err := sender.Write(second[len(second)/2:]); err != nil {
		t.Fatal(err)
	}
	_ = sender.Close()
	got := <-answered
	if got.err != nil || got.code != http.StatusAccepted {
		t.Fatalf("the second restore, accepted after the first ended: %d %s %v", got.code, got.body, got.err)
	}
	accepted := &v1beta1.ETCDInstance{}
	if err := json.Unmarshal(got.body, accepted); err != nil {
		t.Fatal(err)
	}
	e.restoredAndRunning(accepted, 2*time.Minute)
	if got, _ := keyValues(t, e.etcdClient(ns, name), "/k"); got["/k"] != "second" {
		t.Fatalf("after the second restore /k = %q, want %q", got["/k"], "second")
	}
}

// restoreAnswer is the answer to a restore request sent by hand.
type restoreAnswer struct {
	code int
	body []byte
	err  error
}

// startHeldRestore posts a restore of ns/name with the snapshot second, sends half of it, and
// returns once the server spools it: the answer comes on the channel once the rest is sent
// through the pipe and the restore ends.
func startHeldRestore(t *testing.T, e *ctlEnv, ns, name string, second []byte) (<-chan restoreAnswer, *io.PipeWriter) {
	t.Helper()
	cfg := e.srv.Config()
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	body, sender := io.Pipe()
	t.Cleanup(func() { _ = sender.Close() }) // a failed test does not leave the upload hanging
	req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("%s/apis/etcdaas.dev/v1beta1/namespaces/%s/etcdinstances/%s/restore", cfg.Host, ns, name), body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.ContentLength = int64(len(second))
	answered := make(chan restoreAnswer, 1)
	go func() {
		resp, err := hc.Do(req)
		if err != nil {
			answered <- restoreAnswer{err: err}
			return
		}
		defer func() { _ = resp.Body.Close() }()
		data, err := io.ReadAll(resp.Body)
		answered <- restoreAnswer{resp.StatusCode, data, err}
	}()
	if _, err := sender.Write(second[:len(second)/2]); err != nil {
		t.Fatal(err)
	}
	spool := filepath.Join(e.dir, "instances", ns, name, "restore", "snapshot-*.part")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if parts, _ := filepath.Glob(spool); len(parts) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the second upload never reached the spool directory")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return answered, sender
}

// TestRestoreOfAMissingOrUndeployedInstance: 404 for an instance that does not exist, 409 for
// one without members (a version the local backend does not run keeps it from deploying).
func TestRestoreOfAMissingOrUndeployedInstance(t *testing.T) {
	t.Parallel()
	e := ctlStart(t, local.Options{})
	snap := snapshottest.Make(t, t.TempDir(), "snap.db", map[string]string{"k": "v"})
	if resp := e.postRestoreFile("restore", "nope", snap); resp.code != http.StatusNotFound {
		t.Fatalf("missing instance: %d %s", resp.code, resp.body)
	}
	e.create("restore", &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "pending"}, Spec: v1beta1.ETCDInstanceSpec{Version: "3.5"}})
	e.waitFor("restore", "pending", time.Minute, "Failed", func(i *v1beta1.ETCDInstance) bool { return i.Status.Phase == v1beta1.PhaseFailed })
	if resp := e.postRestoreFile("restore", "pending", snap); resp.code != http.StatusConflict || !strings.Contains(string(resp.body), "no running cluster") {
		t.Fatalf("undeployed instance: %d %s", resp.code, resp.body)
	}
}

// rssParts returns this process's anonymous and file-backed resident memory in bytes.
func rssParts(t *testing.T) (anon, file int64) {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	parse := func(rest string) int64 {
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return kb * 1024
	}
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "RssAnon:"); ok {
			anon = parse(rest)
		}
		if rest, ok := strings.CutPrefix(sc.Text(), "RssFile:"); ok {
			file = parse(rest)
		}
	}
	return anon, file
}

// TestRestoreOfALargeSnapshot restores a snapshot of more than 200 MiB and reports how long it
// takes and how the process's memory moves. The API server (upload and verification) must not
// hold the snapshot: the anonymous memory of the process grows by less than 32 MiB while the
// request is served. The process also runs the members and the controller, whose restored
// databases are memory-mapped files (file-backed RSS), reported separately.
func TestRestoreOfALargeSnapshot(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 200 MiB")
	}
	e := ctlStart(t, local.Options{SnapshotCount: 40, SnapshotCatchUpEntries: 20, QuotaBackendBytes: 1 << 30})
	ns, name := "bigrestore", "db"
	ctx := context.Background()
	cli := e.runningClient(ns, name, 1)
	n := putLarge(t, cli, 210<<20)
	path, size, _ := e.backupToFile(ns, name)
	if _, err := cli.Put(ctx, "/big/after", "x"); err != nil {
		t.Fatal(err)
	}

	// As in the backup measurement: a soft memory limit removes the GC's slack, not live memory.
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	prevLimit := debug.SetMemoryLimit(int64(ms.Sys-ms.HeapReleased) + 16<<20)
	defer debug.SetMemoryLimit(prevLimit)

	baseAnon, baseFile := rssParts(t)
	var mu sync.Mutex
	peakAnon, peakFile := baseAnon, baseFile
	stop, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			a, f := rssParts(t)
			mu.Lock()
			peakAnon, peakFile = max(peakAnon, a), max(peakFile, f)
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	start := time.Now()
	resp := e.postRestoreFile(ns, name, path)
	accepted := time.Since(start)
	mu.Lock()
	requestAnon := peakAnon
	mu.Unlock()
	if resp.code != http.StatusAccepted {
		t.Fatalf("restore: %d %s", resp.code, resp.body)
	}
	e.restoredAndRunning(resp.instance, 5*time.Minute)
	done := time.Since(start)
	close(stop)
	<-sampled

	count, err := e.etcdClient(ns, name).Get(ctx, "/big/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || count.Count != int64(n) {
		t.Fatalf("after the restore: %v keys (%v), want %d", count, err, n)
	}
	mib := func(b int64) float64 { return float64(b) / (1 << 20) }
	t.Logf("FIGURE restore of a %.0f MiB snapshot (1 member): accepted (uploaded and verified) in %s, Running again after %s; "+
		"anonymous RSS %.0f MiB -> %.0f MiB during the request (+%.1f MiB), peak %.0f MiB until Running; file-backed RSS %.0f -> peak %.0f MiB",
		mib(size), accepted.Round(time.Millisecond), done.Round(time.Millisecond),
		mib(baseAnon), mib(requestAnon), mib(requestAnon-baseAnon), mib(peakAnon), mib(baseFile), mib(peakFile))
	if growth := requestAnon - baseAnon; growth >= 32<<20 {
		t.Fatalf("anonymous RSS grew by %.1f MiB while the server received and verified the snapshot, want < 32 MiB", mib(growth))
	}
}

// TestPluginRestore backs an instance up and restores it with the plugin, which waits until
// the instance runs again; a corrupt file is refused with the server's reason.
func TestPluginRestore(t *testing.T) {
	t.Parallel()
	e := ctlStart(t, local.Options{})
	plugin := pluginRunner{server: e.srv}
	ns, name := "pluginrestore", "db"
	ctx := context.Background()
	cli := e.runningClient(ns, name, 1)
	if _, err := cli.Put(ctx, "/k", "backed-up"); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "db.snap")
	expectPlugin(t, plugin.run(t, ns, "backup", name, "-o", file), 0, "", "")
	if _, err := cli.Put(ctx, "/k", "later"); err != nil {
		t.Fatal(err)
	}

	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	corrupt := filepath.Join(t.TempDir(), "corrupt.snap")
	raw[100] ^= 1
	if err := os.WriteFile(corrupt, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	r := plugin.run(t, ns, "restore", name, "-f", corrupt)
	expectPlugin(t, r, 1, "", `The ETCDInstance "db" is invalid: body: the snapshot's integrity hash does not match`)

	r = plugin.run(t, ns, "restore", name, "-f", file)
	expectPlugin(t, r, 0, "", "")
	if !strings.HasPrefix(r.stdout, "etcdinstance.etcdaas.dev/db: restore ") || strings.Count(r.stdout, "accepted") != 1 || !strings.HasSuffix(r.stdout, "etcdinstance.etcdaas.dev/db restored: 1/1 members ready\n") {
		t.Errorf("stdout %q", r.stdout)
	}
	got, _ := keyValues(t, e.etcdClient(ns, name), "/k")
	if got["/k"] != "backed-up" {
		t.Fatalf("after the plugin's restore /k = %q, want backed-up", got["/k"])
	}
	expectPlugin(t, plugin.run(t, ns, "restore", name), 1, "", "error: --filename (-f) FILE is required")
}
