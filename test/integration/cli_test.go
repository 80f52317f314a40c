package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/cli"
	"github.com/etcdaas/etcdaas/pkg/cmd/server"
	"github.com/etcdaas/etcdaas/pkg/controller"
	"github.com/etcdaas/etcdaas/pkg/controller/backend/local"
	"github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned"
	"github.com/etcdaas/etcdaas/test/integration/framework"
)

// pluginResult is what one kubectl-etcdaas invocation printed and returned.
type pluginResult struct {
	stdout, stderr string
	code           int
}

// pluginRunner runs kubectl-etcdaas in-process against a standalone server, through its
// admin kubeconfig, exactly as `kubectl etcdaas ARGS` would.
type pluginRunner struct {
	server *framework.Server
}

// run runs the plugin with args in namespace ns.
func (p pluginRunner) run(t *testing.T, ns string, args ...string) pluginResult {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	full := append([]string{"--kubeconfig", p.server.KubeconfigPath, "-n", ns}, args...)
	code := cli.Run(ctx, cli.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}, full)
	t.Logf("kubectl etcdaas %s -> %d\n%s%s", strings.Join(args, " "), code, out.String(), errOut.String())
	return pluginResult{stdout: out.String(), stderr: errOut.String(), code: code}
}

func expectPlugin(t *testing.T, r pluginResult, code int, stdout, stderrPrefix string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit code %d, want %d; stderr: %s", r.code, code, r.stderr)
	}
	if stdout != "" && r.stdout != stdout {
		t.Errorf("stdout %q, want %q", r.stdout, stdout)
	}
	if !strings.HasPrefix(r.stderr, stderrPrefix) {
		t.Errorf("stderr %q, want prefix %q", r.stderr, stderrPrefix)
	}
}

func TestCLILifecycle(t *testing.T) {
	server := framework.StartT(t, framework.Options{})
	plugin := pluginRunner{server: server}
	ns := "cli-" + rand.String(6)
	cs, err := versioned.NewForConfig(server.Config())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s := cliSession{plugin: plugin, cs: cs, ns: ns}

	s.checkCreates(t, ctx)
	s.checkServerErrors(t)
	s.checkList(t)
	s.checkGetFormats(t)
	s.checkScale(t, ctx)
	s.checkDelete(t, ctx)
}

// cliSession is one namespace driven through kubectl-etcdaas, with a clientset to check
// the server's side.
type cliSession struct {
	plugin pluginRunner
	cs     *versioned.Clientset
	ns     string
}

// checkCreates creates three instances and checks their specs, the server's default and its
// admission warning.
func (s cliSession) checkCreates(t *testing.T, ctx context.Context) {
	t.Helper()
	runPlugin, cs, ns := s.plugin.run, s.cs, s.ns
	expectPlugin(t, runPlugin(t, ns, "create", "one", "--replicas", "1"), 0, "etcdinstance.etcdaas.dev/one created\n", "")
	expectPlugin(t, runPlugin(t, ns, "create", "three", "--replicas", "3", "--tls", "--version", "3.7"), 0, "etcdinstance.etcdaas.dev/three created\n", "")
	expectPlugin(t, runPlugin(t, ns, "create", "defaulted"), 0, "etcdinstance.etcdaas.dev/defaulted created\n", "")

	got, err := cs.EtcdaasV1beta1().ETCDInstances(ns).Get(ctx, "three", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *got.Spec.Replicas != 3 || got.Spec.TLS == nil || !got.Spec.TLS.Enabled || got.Spec.Version != "3.7" {
		t.Errorf("created spec %+v", got.Spec)
	}
	got, err = cs.EtcdaasV1beta1().ETCDInstances(ns).Get(ctx, "defaulted", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *got.Spec.Replicas != v1beta1.DefaultReplicas {
		t.Errorf("server default not applied: %+v", got.Spec)
	}

	// The server's admission warning for an even member count reaches stderr.
	expectPlugin(t, runPlugin(t, ns, "create", "even", "--replicas", "2", "--dry-run=server"), 0,
		"etcdinstance.etcdaas.dev/even created (server dry run)\n", "Warning: ")
}

// checkServerErrors checks that errors carry the server's Status, formatted as kubectl formats
// them.
func (s cliSession) checkServerErrors(t *testing.T) {
	t.Helper()
	runPlugin, ns := s.plugin.run, s.ns
	expectPlugin(t, runPlugin(t, ns, "create", "one"), 1, "",
		"Error from server (AlreadyExists): etcdinstances.etcdaas.dev \"one\" already exists\n")
	expectPlugin(t, runPlugin(t, ns, "create", "big", "--replicas", "12"), 1, "",
		"The ETCDInstance \"big\" is invalid: spec.replicas: ")
	expectPlugin(t, runPlugin(t, ns, "create", "Not_A_Name"), 1, "", "The ETCDInstance \"Not_A_Name\" is invalid: ")
	expectPlugin(t, runPlugin(t, ns, "get", "missing"), 1, "",
		"Error from server (NotFound): etcdinstances.etcdaas.dev \"missing\" not found\n")
}

// checkList checks list: a table of the three, and nothing from other namespaces.
func (s cliSession) checkList(t *testing.T) {
	t.Helper()
	runPlugin, ns := s.plugin.run, s.ns
	r := runPlugin(t, ns, "list")
	expectPlugin(t, r, 0, "", "")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "NAME ") {
		t.Fatalf("list:\n%s", r.stdout)
	}
	for i, name := range []string{"defaulted", "one", "three"} {
		if fields := strings.Fields(lines[i+1]); fields[0] != name {
			t.Errorf("row %d: %q, want %s", i+1, lines[i+1], name)
		}
	}
	expectPlugin(t, runPlugin(t, ns, "list", "-o", "name"), 0,
		"etcdinstance.etcdaas.dev/defaulted\netcdinstance.etcdaas.dev/one\netcdinstance.etcdaas.dev/three\n", "")
	expectPlugin(t, runPlugin(t, "cli-empty-"+rand.String(4), "list"), 0, "", "No resources found in cli-empty-")
}

// checkGetFormats checks get in every format.
func (s cliSession) checkGetFormats(t *testing.T) {
	t.Helper()
	runPlugin, ns := s.plugin.run, s.ns
	r := runPlugin(t, ns, "get", "three", "-o", "wide")
	expectPlugin(t, r, 0, "", "")
	if fields := strings.Fields(strings.Split(r.stdout, "\n")[1]); len(fields) < 9 || fields[0] != "three" || fields[1] != "3" || fields[6] != "true" {
		t.Errorf("get -o wide:\n%s", r.stdout)
	}
	for _, format := range []string{"json", "yaml"} {
		r = runPlugin(t, ns, "get", "three", "-o", format)
		expectPlugin(t, r, 0, "", "")
		var obj v1beta1.ETCDInstance
		var err error
		if format == "json" {
			err = json.Unmarshal([]byte(r.stdout), &obj)
		} else {
			err = yaml.Unmarshal([]byte(r.stdout), &obj)
		}
		if err != nil {
			t.Fatalf("-o %s: %v", format, err)
		}
		if obj.Kind != "ETCDInstance" || obj.APIVersion != "etcdaas.dev/v1beta1" || obj.Name != "three" || obj.Namespace != ns || obj.UID == "" {
			t.Errorf("-o %s: %+v", format, obj.ObjectMeta)
		}
		if len(obj.ManagedFields) != 0 {
			t.Errorf("-o %s shows managedFields", format)
		}
	}
}

// checkScale checks scale through the scale subresource, and its errors.
func (s cliSession) checkScale(t *testing.T, ctx context.Context) {
	t.Helper()
	runPlugin, cs, ns := s.plugin.run, s.cs, s.ns
	expectPlugin(t, runPlugin(t, ns, "scale", "one", "--replicas", "3"), 0, "etcdinstance.etcdaas.dev/one scaled\n", "")
	scale, err := cs.EtcdaasV1beta1().ETCDInstances(ns).GetScale(ctx, "one", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if scale.Spec.Replicas != 3 {
		t.Errorf("scale.spec.replicas %d after scaling to 3", scale.Spec.Replicas)
	}
	expectPlugin(t, runPlugin(t, ns, "scale", "one", "--replicas", "10"), 1, "", "The ")
	expectPlugin(t, runPlugin(t, ns, "scale", "one", "--current-replicas", "1", "--replicas", "5"), 1, "",
		"error: expected replicas to be 1, was 3\n")
	expectPlugin(t, runPlugin(t, ns, "scale", "missing", "--replicas", "1"), 1, "",
		"Error from server (NotFound): etcdinstances.etcdaas.dev \"missing\" not found\n")
}

// checkDelete checks that delete waits until the instances are gone (a controller's finalizer
// included).
func (s cliSession) checkDelete(t *testing.T, ctx context.Context) {
	t.Helper()
	runPlugin, cs, ns := s.plugin.run, s.cs, s.ns
	expectPlugin(t, runPlugin(t, ns, "delete", "one", "three", "defaulted", "--timeout", "90s"), 0,
		"etcdinstance.etcdaas.dev \"one\" deleted\netcdinstance.etcdaas.dev \"three\" deleted\netcdinstance.etcdaas.dev \"defaulted\" deleted\n", "")
	list, err := cs.EtcdaasV1beta1().ETCDInstances(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 0 {
		t.Errorf("%d instances left after delete", len(list.Items))
	}
	expectPlugin(t, runPlugin(t, ns, "delete", "one"), 1, "",
		"Error from server (NotFound): etcdinstances.etcdaas.dev \"one\" not found\n")
}

// TestCLIWithController drives real etcd members: the in-process controller runs them with the
// local backend, and backup streams a snapshot from them.
func TestCLIWithController(t *testing.T) {
	t.Parallel()
	srv := startWithLocalController(t)
	plugin := pluginRunner{server: srv}
	runPlugin := plugin.run
	cs, err := versioned.NewForConfig(srv.Config())
	if err != nil {
		t.Fatal(err)
	}
	ns := "cli-" + rand.String(6)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s := cliSession{plugin: plugin, cs: cs, ns: ns}

	start := time.Now()
	expectPlugin(t, runPlugin(t, ns, "create", "db", "--replicas", "1"), 0, "etcdinstance.etcdaas.dev/db created\n", "")
	in := s.waitRunning(t, ctx, "db", 1)
	t.Logf("create to Running (1 member): %s", time.Since(start).Round(time.Millisecond))

	r := runPlugin(t, ns, "get", "db", "-o", "wide")
	expectPlugin(t, r, 0, "", "")
	if fields := strings.Fields(strings.Split(r.stdout, "\n")[1]); len(fields) < 9 || fields[2] != "1/1" || fields[3] != "Running" || fields[8] != "db-0" {
		t.Errorf("get -o wide:\n%s", r.stdout)
	}

	s.checkBackupOfRunningMember(t, ctx, in)
	s.checkFailedBackupLeavesNoFile(t)
	s.checkScaleWithController(t, ctx)

	// delete waits for the controller to stop the members and clear its finalizer.
	expectPlugin(t, runPlugin(t, ns, "delete", "db", "--timeout", "2m"), 0, "etcdinstance.etcdaas.dev \"db\" deleted\n", "")
	if _, err := cs.EtcdaasV1beta1().ETCDInstances(ns).Get(ctx, "db", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("after delete: %v", err)
	}
}

// startWithLocalController starts a standalone server whose post-start hook runs the
// controller with the local backend, in a data directory of the test.
func startWithLocalController(t *testing.T) *framework.Server {
	t.Helper()
	dir := t.TempDir()
	var (
		mu             sync.Mutex
		controllerDone <-chan struct{}
	)
	// Cleanups run last-registered first: the server stops (and with it the controller's
	// context), then this waits for the controller, then the data directory goes.
	t.Cleanup(func() {
		mu.Lock()
		done := controllerDone
		mu.Unlock()
		if done != nil {
			select {
			case <-done:
			case <-time.After(time.Minute):
				t.Error("the controller did not stop")
			}
		}
	})
	srv := framework.StartT(t, framework.Options{DataDir: dir, PostStartHooks: []server.PostStartHook{{
		Name: "cli-test-controller",
		Run: func(ctx context.Context, config *rest.Config) error {
			done, err := controller.StartLocal(ctx, config, local.Options{Dir: dir}, "")
			mu.Lock()
			controllerDone = done
			mu.Unlock()
			return err
		},
	}}})
	return srv
}

// waitRunning waits until instance name is Running with replicas ready members and its
// generation observed, and returns it.
func (s cliSession) waitRunning(t *testing.T, ctx context.Context, name string, replicas int32) *v1beta1.ETCDInstance {
	t.Helper()
	var last *v1beta1.ETCDInstance
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		in, err := s.cs.EtcdaasV1beta1().ETCDInstances(s.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		last = in
		return in.Status.Phase == v1beta1.PhaseRunning && in.Status.ReadyReplicas == replicas &&
			in.Status.ObservedGeneration == in.Generation, nil
	})
	if err != nil {
		t.Fatalf("%s not Running with %d ready members: %v; last status %+v", name, replicas, err, last)
	}
	return last
}

// checkBackupOfRunningMember writes keys to the running member of in, backs it up through the
// plugin and checks the snapshot with etcdutl.
func (s cliSession) checkBackupOfRunningMember(t *testing.T, ctx context.Context, in *v1beta1.ETCDInstance) {
	t.Helper()
	runPlugin, ns := s.plugin.run, s.ns
	// Write keys to the member, then back it up.
	client, err := clientv3.New(clientv3.Config{Endpoints: []string{in.Status.Members[0].ClientURL}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	const keys = 500
	for i := range keys {
		if _, err := client.Put(ctx, fmt.Sprintf("/cli/%04d", i), strings.Repeat("x", 256)); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(t.TempDir(), "db.snapshot")
	r := runPlugin(t, ns, "backup", "db", "-o", file)
	expectPlugin(t, r, 0, "", "")
	if !strings.HasPrefix(r.stdout, "Snapshot of "+ns+"/db saved to "+file) || !strings.Contains(r.stdout, fmt.Sprintf(", %d keys, ", keys)) {
		t.Errorf("backup: %q", r.stdout)
	}
	status, err := snapshot.NewV3(zap.NewNop()).Status(file)
	if err != nil {
		t.Fatalf("etcdutl snapshot status on the backup: %v", err)
	}
	if status.TotalKey != keys {
		t.Errorf("the backup holds %d keys, want %d", status.TotalKey, keys)
	}
	if _, err := os.Stat(file + ".part"); !os.IsNotExist(err) {
		t.Errorf("%s.part left behind: %v", file, err)
	}
}

// checkFailedBackupLeavesNoFile checks that a backup of a missing instance fails with NotFound
// and leaves no file.
func (s cliSession) checkFailedBackupLeavesNoFile(t *testing.T) {
	t.Helper()
	runPlugin, ns := s.plugin.run, s.ns
	missing := filepath.Join(t.TempDir(), "missing.snapshot")
	expectPlugin(t, runPlugin(t, ns, "backup", "nope", "-o", missing), 1, "",
		"Error from server (NotFound): etcdinstances.etcdaas.dev \"nope\" not found\n")
	for _, p := range []string{missing, missing + ".part"} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s exists after a failed backup", p)
		}
	}
}

// checkScaleWithController scales through the plugin to three members, which the controller
// adds one at a time.
func (s cliSession) checkScaleWithController(t *testing.T, ctx context.Context) {
	t.Helper()
	runPlugin, ns := s.plugin.run, s.ns
	// Scale through the plugin; the controller adds members one at a time.
	start := time.Now()
	expectPlugin(t, runPlugin(t, ns, "scale", "db", "--replicas", "3"), 0, "etcdinstance.etcdaas.dev/db scaled\n", "")
	s.waitRunning(t, ctx, "db", 3)
	t.Logf("scale 1 -> 3: %s", time.Since(start).Round(time.Millisecond))
	r := runPlugin(t, ns, "list")
	expectPlugin(t, r, 0, "", "")
	if fields := strings.Fields(strings.Split(r.stdout, "\n")[1]); fields[0] != "db" || fields[1] != "3" || fields[2] != "3/3" || fields[3] != "Running" {
		t.Errorf("list:\n%s", r.stdout)
	}
}
