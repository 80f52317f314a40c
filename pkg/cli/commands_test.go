package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/yaml"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
)

func instance(ns, name string, replicas int32) *v1beta1.ETCDInstance {
	return &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: ns,
			CreationTimestamp: metav1.NewTime(time.Now().Add(-2 * time.Hour)),
			ManagedFields:     []metav1.ManagedFieldsEntry{{Manager: "kubectl-etcdaas", Operation: metav1.ManagedFieldsOperationUpdate}},
		},
		Spec: v1beta1.ETCDInstanceSpec{Replicas: int32p(replicas), Version: "3.7"},
		Status: v1beta1.ETCDInstanceStatus{
			Phase: v1beta1.PhaseRunning, Replicas: replicas, ReadyReplicas: replicas,
			Selector: "app.kubernetes.io/instance=" + name,
			Members: []v1beta1.MemberStatus{
				{Name: name + "-0", Ready: true, Leader: true},
			},
		},
	}
}

func expectCode(t *testing.T, r result, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit code %d, want %d\nstdout: %s\nstderr: %s", r.code, code, r.stdout, r.stderr)
	}
}

func TestCreate(t *testing.T) {
	s := newFakeServer(t)
	r := s.run(t, "create", "my-etcd", "--replicas", "5", "--tls", "--version", "3.6")
	expectCode(t, r, 0)
	if r.stdout != "etcdinstance.etcdaas.dev/my-etcd created\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	got := s.get("team", "my-etcd")
	if got == nil {
		t.Fatal("not created in the kubeconfig's namespace team")
	}
	if *got.Spec.Replicas != 5 || got.Spec.TLS == nil || !got.Spec.TLS.Enabled || got.Spec.Version != "3.6" {
		t.Errorf("spec %+v", got.Spec)
	}
	reqs := s.recorded()
	if last := reqs[len(reqs)-1]; !strings.Contains(last.Query, "fieldManager=kubectl-etcdaas") {
		t.Errorf("create without fieldManager: %+v", last)
	}

	// Without flags the server's defaults apply: replicas and tls are not sent.
	r = s.run(t, "create", "plain", "-n", "dev")
	expectCode(t, r, 0)
	reqs = s.recorded()
	body := reqs[len(reqs)-1].Body
	if strings.Contains(body, "replicas") || strings.Contains(body, "tls") || strings.Contains(body, "version") {
		t.Errorf("defaults sent explicitly: %s", body)
	}
	if s.get("dev", "plain") == nil {
		t.Error("-n dev ignored")
	}

	// A server warning (even replicas) goes to stderr, once.
	r = s.run(t, "create", "even", "--replicas", "4")
	expectCode(t, r, 0)
	if !strings.Contains(r.stderr, "Warning: spec.replicas: an even number") {
		t.Errorf("warning not shown: %q", r.stderr)
	}

	checkCreateDryRuns(t, s)
	checkCreatePrintsJSON(t, s)
}

// checkCreateDryRuns checks create --dry-run: the server dry run asks the server and stores
// nothing, the client dry run sends no request (with -o yaml it writes a manifest).
func checkCreateDryRuns(t *testing.T, s *fakeServer) {
	t.Helper()
	// --dry-run asks the server and stores nothing.
	r := s.run(t, "create", "dry", "--dry-run")
	expectCode(t, r, 0)
	if r.stdout != "etcdinstance.etcdaas.dev/dry created (server dry run)\n" || s.get("team", "dry") != nil {
		t.Errorf("dry run: %q", r.stdout)
	}
	reqs := s.recorded()
	if q := reqs[len(reqs)-1].Query; !strings.Contains(q, "dryRun=All") {
		t.Errorf("server dry run sent %q", q)
	}

	// --dry-run=client -o yaml writes a manifest without a request.
	before := len(s.recorded())
	r = s.run(t, "create", "manifest", "--replicas", "5", "--dry-run=client", "-o", "yaml")
	expectCode(t, r, 0)
	want := "apiVersion: etcdaas.dev/v1beta1\nkind: ETCDInstance\nmetadata:\n  name: manifest\n  namespace: team\nspec:\n  replicas: 5\nstatus: {}\n"
	if r.stdout != want {
		t.Errorf("manifest\n got %q\nwant %q", r.stdout, want)
	}
	if len(s.recorded()) != before {
		t.Error("client dry run sent a request")
	}
	r = s.run(t, "create", "x", "--dry-run=client")
	expectCode(t, r, 0)
	if r.stdout != "etcdinstance.etcdaas.dev/x created (dry run)\n" {
		t.Errorf("client dry run: %q", r.stdout)
	}
}

// checkCreatePrintsJSON checks that create -o json prints what the server returned, defaults
// included.
func checkCreatePrintsJSON(t *testing.T, s *fakeServer) {
	t.Helper()
	r := s.run(t, "create", "printed", "-o", "json")
	expectCode(t, r, 0)
	var printed v1beta1.ETCDInstance
	if err := json.Unmarshal([]byte(r.stdout), &printed); err != nil {
		t.Fatal(err)
	}
	if printed.UID == "" || *printed.Spec.Replicas != 3 || printed.Spec.Version != "3.7" {
		t.Errorf("printed %+v", printed)
	}
}

func TestCreateErrors(t *testing.T) {
	s := newFakeServer(t)
	s.add(instance("team", "taken", 3))
	for _, tc := range []struct {
		name   string
		args   []string
		stderr string
	}{
		{"exists", []string{"create", "taken"}, "Error from server (AlreadyExists): etcdinstances.etcdaas.dev \"taken\" already exists\n"},
		{"invalid", []string{"create", "big", "--replicas", "12"}, "The ETCDInstance \"big\" is invalid: spec.replicas: Invalid value: 12: must be between 1 and 9, inclusive\n"},
		{"no name", []string{"create"}, "error: exactly one NAME is required, got 0\nSee 'kubectl etcdaas create -h' for help and examples\n"},
		{"two names", []string{"create", "a", "b"}, "error: exactly one NAME is required, got 2\nSee 'kubectl etcdaas create -h' for help and examples\n"},
		{"bad flag value", []string{"create", "x", "--replicas", "three"}, "error: invalid argument \"three\" for \"--replicas\" flag: must be an integer\nSee 'kubectl etcdaas create -h' for help and examples\n"},
		{"unknown flag", []string{"create", "x", "--replica", "3"}, "error: unknown flag: --replica\nSee 'kubectl etcdaas create -h' for help and examples\n"},
		{"bad dry run", []string{"create", "x", "--dry-run=maybe"}, "error: Invalid dry-run value (maybe). Must be \"none\", \"server\", or \"client\".\nSee 'kubectl etcdaas create -h' for help and examples\n"},
		{"bad output", []string{"create", "x", "-o", "wide"}, "error: unable to match a printer suitable for the output format \"wide\", allowed formats are: json,name,yaml\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.run(t, tc.args...)
			expectCode(t, r, 1)
			if r.stderr != tc.stderr {
				t.Errorf("stderr\n got %q\nwant %q", r.stderr, tc.stderr)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q", r.stdout)
			}
		})
	}
}

func TestGet(t *testing.T) {
	s := newFakeServer(t)
	in := instance("team", "my-etcd", 3)
	in.Spec.TLS = &v1beta1.TLSSpec{Enabled: true}
	in.Status.ReadyReplicas = 2
	s.add(in)

	checkGetTables(t, s)
	checkGetObjectFormats(t, s)
	checkGetTemplates(t, s)

	// The context namespace is used, and --context switches it.
	r := s.run(t, "get", "my-etcd", "--context", "other")
	expectCode(t, r, 1)
	if r.stderr != "Error from server (NotFound): etcdinstances.etcdaas.dev \"my-etcd\" not found\n" {
		t.Errorf("stderr %q", r.stderr)
	}
	reqs := s.recorded()
	if got := reqs[len(reqs)-1].Path; got != "/apis/etcdaas.dev/v1beta1/namespaces/other-ns/etcdinstances/my-etcd" {
		t.Errorf("--context: path %s", got)
	}
}

// checkGetTables checks the table get prints for team/my-etcd, the server's, plain and wide.
func checkGetTables(t *testing.T, s *fakeServer) {
	t.Helper()
	r := s.run(t, "get", "my-etcd")
	expectCode(t, r, 0)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 {
		t.Fatalf("table %q", r.stdout)
	}
	if got := strings.Fields(lines[0]); strings.Join(got, " ") != "NAME REPLICAS READY PHASE VERSION AGE" {
		t.Errorf("header %q", lines[0])
	}
	if got := strings.Fields(lines[1]); strings.Join(got, " ") != "my-etcd 3 2/3 Running 3.7 120m" {
		t.Errorf("row %q", lines[1])
	}

	// The table is the server's, the one kubectl get prints.
	if reqs := s.recorded(); !strings.Contains(reqs[len(reqs)-1].Accept, "as=Table;v=v1;g=meta.k8s.io") {
		t.Errorf("get asked for %q, not the server's table", reqs[len(reqs)-1].Accept)
	}

	r = s.run(t, "get", "my-etcd", "-o", "wide")
	expectCode(t, r, 0)
	lines = strings.Split(strings.TrimSpace(r.stdout), "\n")
	if got := strings.Join(strings.Fields(lines[0]), " "); got != "NAME REPLICAS READY PHASE VERSION AGE TLS MEMBERS LEADER" {
		t.Errorf("wide header %q", got)
	}
	if got := strings.Join(strings.Fields(lines[1]), " "); got != "my-etcd 3 2/3 Running 3.7 120m true my-etcd-0 my-etcd-0" {
		t.Errorf("wide row %q", got)
	}
}

// checkGetObjectFormats checks get -o yaml, json and name for team/my-etcd.
func checkGetObjectFormats(t *testing.T, s *fakeServer) {
	t.Helper()
	var r result
	for _, format := range []string{"yaml", "json"} {
		r = s.run(t, "get", "my-etcd", "-o", format)
		expectCode(t, r, 0)
		var got v1beta1.ETCDInstance
		var err error
		if format == "json" {
			err = json.Unmarshal([]byte(r.stdout), &got)
		} else {
			err = yaml.UnmarshalStrict([]byte(r.stdout), &got)
		}
		if err != nil {
			t.Fatalf("-o %s: %v\n%s", format, err, r.stdout)
		}
		if got.APIVersion != "etcdaas.dev/v1beta1" || got.Kind != "ETCDInstance" {
			t.Errorf("-o %s: type %q %q", format, got.APIVersion, got.Kind)
		}
		if got.Name != "my-etcd" || got.Namespace != "team" || *got.Spec.Replicas != 3 || !got.Spec.TLS.Enabled || got.Status.Members[0].Name != "my-etcd-0" {
			t.Errorf("-o %s: %+v", format, got)
		}
		if len(got.ManagedFields) != 0 {
			t.Errorf("-o %s shows managedFields", format)
		}
	}

	r = s.run(t, "get", "my-etcd", "-o", "name")
	expectCode(t, r, 0)
	if r.stdout != "etcdinstance.etcdaas.dev/my-etcd\n" {
		t.Errorf("-o name %q", r.stdout)
	}
}

// checkGetTemplates checks get's templates, as kubectl get takes them: the plugin refused every
// one.
func checkGetTemplates(t *testing.T, s *fakeServer) {
	t.Helper()
	var r result
	for _, tc := range []struct{ format, want string }{
		{"jsonpath={.status.phase}", "Running"},
		{"jsonpath={range .status.members[*]}{.name} {end}", "my-etcd-0 "},
		{"jsonpath={.status.nothing}", ""},
		{"go-template={{.metadata.namespace}}/{{.metadata.name}}", "team/my-etcd"},
		{"jsonpath={.kind}", "ETCDInstance"},
	} {
		r = s.run(t, "get", "my-etcd", "-o", tc.format)
		expectCode(t, r, 0)
		if r.stdout != tc.want {
			t.Errorf("-o %s: %q, want %q", tc.format, r.stdout, tc.want)
		}
	}
	r = s.run(t, "get", "my-etcd", "-o", "jsonpath={.status.phase")
	expectCode(t, r, 1)
	if !strings.Contains(r.stderr, "unclosed action") {
		t.Errorf("a bad template: %q", r.stderr)
	}
}

func TestGetErrors(t *testing.T) {
	s := newFakeServer(t)
	for _, tc := range []struct {
		name   string
		args   []string
		stderr string
	}{
		{"not found", []string{"get", "x"}, "Error from server (NotFound): etcdinstances.etcdaas.dev \"x\" not found\n"},
		{"bad output", []string{"get", "x", "-o", "xml"}, "error: unable to match a printer suitable for the output format \"xml\", allowed formats are: go-template,go-template-file,json,jsonpath,jsonpath-as-json,jsonpath-file,name,template,templatefile,wide,yaml\n"},
		{"no name", []string{"get"}, "error: exactly one NAME is required, got 0\nSee 'kubectl etcdaas get -h' for help and examples\n"},
		{"unknown command", []string{"frobnicate"}, "error: unknown command \"frobnicate\" for \"kubectl etcdaas\"\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.run(t, tc.args...)
			expectCode(t, r, 1)
			if r.stderr != tc.stderr {
				t.Errorf("stderr\n got %q\nwant %q", r.stderr, tc.stderr)
			}
		})
	}

	// No server at all: kubectl's connection message.
	r := runPlugin(t, "", false, "get", "x", "--server", "http://127.0.0.1:1")
	expectCode(t, r, 1)
	if r.stderr != "The connection to the server 127.0.0.1:1 was refused - did you specify the right host or port?\n" {
		t.Errorf("stderr %q", r.stderr)
	}
	// A context the kubeconfig does not have.
	r = s.run(t, "get", "x", "--context", "nope")
	expectCode(t, r, 1)
	if r.stderr != "Error in configuration: invalid configuration: context was not found for specified context: nope\n" {
		t.Errorf("stderr %q", r.stderr)
	}
	// A kubeconfig that does not exist.
	r = runPlugin(t, "", false, "get", "x", "--kubeconfig", t.TempDir()+"/missing")
	expectCode(t, r, 1)
	if !strings.HasPrefix(r.stderr, "error: stat ") {
		t.Errorf("stderr %q", r.stderr)
	}
}

func TestList(t *testing.T) {
	s := newFakeServer(t)

	r := s.run(t, "list")
	expectCode(t, r, 0)
	if r.stdout != "" || r.stderr != "No resources found in team namespace.\n" {
		t.Errorf("empty list: %q %q", r.stdout, r.stderr)
	}

	s.add(instance("team", "a", 1))
	s.add(instance("team", "b", 3))
	s.add(instance("elsewhere", "c", 5))

	r = s.run(t, "list")
	expectCode(t, r, 0)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "a ") || !strings.HasPrefix(lines[2], "b ") {
		t.Errorf("list %q", r.stdout)
	}

	r = s.run(t, "list", "-A")
	expectCode(t, r, 0)
	lines = strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "NAMESPACE ") || strings.Join(strings.Fields(lines[1]), " ") != "elsewhere c 5 5/5 Running 3.7 120m" {
		t.Errorf("list -A %q", r.stdout)
	}

	r = s.run(t, "list", "-o", "name", "-n", "elsewhere")
	expectCode(t, r, 0)
	if r.stdout != "etcdinstance.etcdaas.dev/c\n" {
		t.Errorf("-o name %q", r.stdout)
	}

	r = s.run(t, "list", "-o", "json")
	expectCode(t, r, 0)
	var got v1beta1.ETCDInstanceList
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatal(err)
	}
	if got.Kind != "ETCDInstanceList" || len(got.Items) != 2 || got.Items[0].Kind != "ETCDInstance" || got.Items[1].Name != "b" {
		t.Errorf("-o json %+v", got)
	}

	r = s.run(t, "list", "-o", "jsonpath={.items[*].metadata.name}")
	expectCode(t, r, 0)
	if r.stdout != "a b" {
		t.Errorf("-o jsonpath %q", r.stdout)
	}

	r = s.run(t, "list", "-l", "team=storage")
	expectCode(t, r, 0)
	reqs := s.recorded()
	if q := reqs[len(reqs)-1].Query; !strings.Contains(q, "labelSelector=team%3Dstorage") {
		t.Errorf("selector not sent: %q", q)
	}

	r = s.run(t, "list", "extra")
	expectCode(t, r, 1)
	if !strings.HasPrefix(r.stderr, "error: unknown command \"extra\"") {
		t.Errorf("stderr %q", r.stderr)
	}
}

func TestDelete(t *testing.T) {
	s := newFakeServer(t)
	s.add(instance("team", "a", 1))
	s.add(instance("team", "b", 1))
	s.deleteDelay = 2 // the finalizer keeps it two more GETs

	r := s.run(t, "delete", "a", "b")
	expectCode(t, r, 0)
	if r.stdout != "etcdinstance.etcdaas.dev \"a\" deleted\netcdinstance.etcdaas.dev \"b\" deleted\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	if s.get("team", "a") != nil || s.get("team", "b") != nil {
		t.Error("returned before the instances were gone")
	}
	var uidPrecondition bool
	for _, req := range s.recorded() {
		if req.Method == "DELETE" && strings.Contains(req.Body, `"uid":"uid-1"`) {
			uidPrecondition = true
		}
	}
	if !uidPrecondition {
		t.Error("delete without a UID precondition")
	}

	r = s.run(t, "delete", "a")
	expectCode(t, r, 1)
	if r.stderr != "Error from server (NotFound): etcdinstances.etcdaas.dev \"a\" not found\n" {
		t.Errorf("stderr %q", r.stderr)
	}
	r = s.run(t, "delete", "a", "--ignore-not-found")
	expectCode(t, r, 0)

	// --wait=false returns while the finalizer is still at work.
	s.add(instance("team", "c", 1))
	s.deleteDelay = 100
	r = s.run(t, "delete", "c", "--wait=false")
	expectCode(t, r, 0)
	if s.get("team", "c") == nil {
		t.Error("gone already?")
	}
	// A timeout while waiting is an error.
	s.add(instance("team", "d", 1))
	r = s.run(t, "delete", "d", "--timeout", "1s")
	expectCode(t, r, 1)
	if !strings.Contains(r.stderr, `error: timed out waiting for etcdinstance.etcdaas.dev "d" to be deleted`) {
		t.Errorf("stderr %q", r.stderr)
	}

	r = s.run(t, "delete")
	expectCode(t, r, 1)
	if r.stderr != "error: at least one NAME is required\nSee 'kubectl etcdaas delete -h' for help and examples\n" {
		t.Errorf("stderr %q", r.stderr)
	}
}

func TestScale(t *testing.T) {
	s := newFakeServer(t)
	s.add(instance("team", "my-etcd", 3))

	r := s.run(t, "scale", "my-etcd", "--replicas", "5")
	expectCode(t, r, 0)
	if r.stdout != "etcdinstance.etcdaas.dev/my-etcd scaled\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	if got := *s.get("team", "my-etcd").Spec.Replicas; got != 5 {
		t.Errorf("replicas %d", got)
	}
	var viaScale bool
	for _, req := range s.recorded() {
		if req.Method == "PUT" && strings.HasSuffix(req.Path, "/etcdinstances/my-etcd/scale") && strings.Contains(req.Body, `"spec":{"replicas":5}`) {
			viaScale = true
		}
		if req.Method == "PUT" && strings.HasSuffix(req.Path, "/etcdinstances/my-etcd") {
			t.Error("scaled by updating the main resource")
		}
	}
	if !viaScale {
		t.Error("no PUT to the scale subresource")
	}

	// Conflicts are retried with a fresh read.
	s.conflicts = 2
	r = s.run(t, "scale", "my-etcd", "--replicas", "3")
	expectCode(t, r, 0)
	if got := *s.get("team", "my-etcd").Spec.Replicas; got != 3 {
		t.Errorf("after conflicts: replicas %d", got)
	}

	for _, tc := range []struct {
		name   string
		args   []string
		stderr string
	}{
		{"no replicas", []string{"scale", "my-etcd"}, "error: The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0\nSee 'kubectl etcdaas scale -h' for help and examples\n"},
		{"invalid", []string{"scale", "my-etcd", "--replicas", "0"}, "The ETCDInstance \"my-etcd\" is invalid: spec.replicas: Invalid value: 0: must be between 1 and 9, inclusive\n"},
		{"not found", []string{"scale", "nope", "--replicas", "1"}, "Error from server (NotFound): etcdinstances.etcdaas.dev \"nope\" not found\n"},
		{"precondition", []string{"scale", "my-etcd", "--current-replicas", "5", "--replicas", "1"}, "error: expected replicas to be 5, was 3\n"},
		// A precondition below -1 (a typo for 3, say) was dropped and the scale went ahead;
		// kubectl scale refuses it with these words.
		{"bad precondition", []string{"scale", "my-etcd", "--current-replicas=-3", "--replicas", "1"},
			"error: The --current-replicas must specify an integer of -1 or greater\nSee 'kubectl etcdaas scale -h' for help and examples\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.run(t, tc.args...)
			expectCode(t, r, 1)
			if r.stderr != tc.stderr {
				t.Errorf("stderr\n got %q\nwant %q", r.stderr, tc.stderr)
			}
		})
	}
	if got := *s.get("team", "my-etcd").Spec.Replicas; got != 3 {
		t.Errorf("a failed scale changed replicas to %d", got)
	}
	r = s.run(t, "scale", "my-etcd", "--current-replicas", "3", "--replicas", "1")
	expectCode(t, r, 0)
}

func TestHelp(t *testing.T) {
	r := runPlugin(t, "", false, "--help")
	expectCode(t, r, 0)
	for _, want := range []string{"kubectl etcdaas [command]", "backup", "convert", "create", "--kubeconfig", "--context", "-n, --namespace"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("help lacks %q", want)
		}
	}
	r = runPlugin(t, "", false)
	expectCode(t, r, 0)
}

func TestMainEntryPoint(t *testing.T) {
	var out, errOut strings.Builder
	code := Main(t.Context(), IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}, []string{"convert", "-f", "-", "--output-version", "v9"})
	if code != 1 || errOut.String() != "error: unknown version \"v9\": served versions are etcdaas.dev/v1beta1 and etcdaas.dev/v1alpha1\n" {
		t.Errorf("code %d, stderr %q", code, errOut.String())
	}
}

// TestDeleteInterrupted: an interrupt (Ctrl-C) while delete waits says the command was
// canceled, not that the wait timed out, with --timeout as with --timeout=0 (no timeout).
func TestDeleteInterrupted(t *testing.T) {
	s := newFakeServer(t)
	s.deleteDelay = 1 << 20 // a finalizer that never finishes
	for i, timeout := range []string{"5m", "0"} {
		name := fmt.Sprintf("x%d", i)
		s.add(instance("team", name, 1))
		var out, errOut bytes.Buffer
		f := NewFactory(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
		ctx, cancel := context.WithCancel(context.Background())
		interrupt := time.AfterFunc(700*time.Millisecond, cancel) // as main's signal.NotifyContext
		code := run(ctx, f, []string{"--kubeconfig", s.kubeconfig(t, "team"), "delete", name, "--timeout", timeout})
		interrupt.Stop()
		cancel()
		if code != 1 || errOut.String() != "error: context canceled\n" {
			t.Errorf("--timeout %s: exit %d, stderr %q; want 1 and the interrupt, not a timeout", timeout, code, errOut.String())
		}
	}
}

// TestCreateHelpNamesTheServersDefaults: a create without --version is given the server's
// default etcd version (v1beta1's defaulting, etcdaas.DefaultVersion), as without --replicas
// its default member count; the help said the controller's, which picks none.
func TestCreateHelpNamesTheServersDefaults(t *testing.T) {
	s := newFakeServer(t)
	r := s.run(t, "create", "--help")
	expectCode(t, r, 0)
	for _, want := range []string{
		"without --version, the server's default (" + etcdaas.DefaultVersion + ")",
		"(default: the server's, " + etcdaas.DefaultVersion + ")",
	} {
		if !strings.Contains(strings.Join(strings.Fields(r.stdout), " "), want) {
			t.Errorf("create --help does not say %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "controller's") {
		t.Errorf("create --help names the controller's default:\n%s", r.stdout)
	}
}
