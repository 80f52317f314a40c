package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/install"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/registry/etcdinstance"
)

// fakeServer is a small in-memory API server for ETCDInstances: enough of the REST
// semantics (status errors, preconditions, the scale subresource, warnings) to exercise
// the commands, with every request recorded.
type fakeServer struct {
	t   *testing.T
	srv *httptest.Server

	mu        sync.Mutex
	objects   map[string]*v1beta1.ETCDInstance // by namespace/name
	rv        int
	requests  []recordedRequest
	backup    http.HandlerFunc                // serves .../backup when set
	recover   http.HandlerFunc                // serves POST .../recover when set
	defrag    http.HandlerFunc                // serves POST .../defrag when set
	restore   http.HandlerFunc                // serves POST .../restore when set (its body is recorded)
	watch     http.HandlerFunc                // serves GET .../etcdinstances?watch=true when set
	backups   *v1beta1.ETCDInstanceBackupList // GET .../backups answers it for any instance
	conflicts int                             // UpdateScale answers 409 this many times first
	// deleteDelay is how many GETs a deleted object survives (a finalizer at work).
	deleteDelay int
	deleting    map[string]int
}

type recordedRequest struct {
	Method string
	Path   string
	Query  string
	Body   string
	Accept string
}

var etcdinstancesResource = schema.GroupResource{Group: etcdaas.GroupName, Resource: "etcdinstances"}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	s := &fakeServer{t: t, objects: map[string]*v1beta1.ETCDInstance{}, deleting: map[string]int{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

// add stores an instance as if created earlier.
func (s *fakeServer) add(in *v1beta1.ETCDInstance) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in = in.DeepCopy()
	s.rv++
	in.ResourceVersion = strconv.Itoa(s.rv)
	if in.UID == "" {
		in.UID = types.UID(fmt.Sprintf("uid-%d", s.rv))
	}
	s.objects[in.Namespace+"/"+in.Name] = in
}

func (s *fakeServer) get(ns, name string) *v1beta1.ETCDInstance {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.objects[ns+"/"+name]
}

func (s *fakeServer) recorded() []recordedRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]recordedRequest(nil), s.requests...)
}

func (s *fakeServer) writeStatus(w http.ResponseWriter, err error) {
	status := err.(apierrors.APIStatus).Status()
	status.Kind = "Status"
	status.APIVersion = "v1"
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(int(status.Code))
	_ = json.NewEncoder(w).Encode(status)
}

func (s *fakeServer) writeJSON(w http.ResponseWriter, code int, obj any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(obj)
}

// bodyScheme decodes the protobuf request bodies the generated clientset sends: the
// ETCDInstance, Scale and DeleteOptions types.
var bodyScheme = func() *runtime.Scheme {
	scheme := runtime.NewScheme()
	install.Install(scheme)
	utilruntime.Must(autoscalingv1.AddToScheme(scheme))
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	return scheme
}()

// jsonBody returns a request body as JSON: protobuf bodies are decoded as the real server
// decodes them and re-encoded, so that the fake handles and records every body as JSON.
func jsonBody(r *http.Request, body []byte) ([]byte, error) {
	if len(body) == 0 || !strings.HasPrefix(r.Header.Get("Content-Type"), runtime.ContentTypeProtobuf) {
		return body, nil
	}
	// Like the real server, the kind of a body that names none is the one the path takes.
	defaults := v1beta1.SchemeGroupVersion.WithKind("ETCDInstance")
	if strings.HasSuffix(r.URL.Path, "/scale") {
		defaults = autoscalingv1.SchemeGroupVersion.WithKind("Scale")
	}
	obj, _, err := protobuf.NewSerializer(bodyScheme, bodyScheme).Decode(body, &defaults, nil)
	if err != nil {
		return nil, err
	}
	return json.Marshal(obj)
}

func (s *fakeServer) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	body, err := jsonBody(r, body)
	if err != nil {
		s.writeStatus(w, apierrors.NewBadRequest(err.Error()))
		return
	}
	s.mu.Lock()
	s.requests = append(s.requests, recordedRequest{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Body: string(body), Accept: r.Header.Get("Accept")})
	s.mu.Unlock()

	const prefix = "/apis/etcdaas.dev/v1beta1/"
	if !strings.HasPrefix(r.URL.Path, prefix) {
		s.writeStatus(w, apierrors.NewNotFound(schema.GroupResource{}, r.URL.Path))
		return
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, prefix), "/")
	// etcdinstances | namespaces/NS/etcdinstances[/NAME[/SUB]]
	if len(parts) == 1 && parts[0] == "etcdinstances" && r.Method == http.MethodGet {
		s.list(w, r, "")
		return
	}
	if len(parts) < 3 || parts[0] != "namespaces" || parts[2] != "etcdinstances" {
		s.writeStatus(w, apierrors.NewNotFound(schema.GroupResource{}, r.URL.Path))
		return
	}
	ns := parts[1]
	switch {
	case len(parts) == 3 && r.Method == http.MethodGet && r.URL.Query().Get("watch") == "true" && s.watch != nil:
		s.watch(w, r)
	case len(parts) == 3 && r.Method == http.MethodGet:
		s.list(w, r, ns)
	case len(parts) == 3 && r.Method == http.MethodPost:
		s.create(w, r, ns, body)
	case len(parts) == 4 && r.Method == http.MethodGet:
		s.getOne(w, r, ns, parts[3])
	case len(parts) == 4 && r.Method == http.MethodDelete:
		s.delete(w, ns, parts[3], body)
	case len(parts) == 5 && parts[4] == "scale":
		s.scale(w, r, ns, parts[3], body)
	case len(parts) == 5 && parts[4] == "backup" && r.Method == http.MethodGet:
		if s.get(ns, parts[3]) == nil {
			s.writeStatus(w, apierrors.NewNotFound(etcdinstancesResource, parts[3]))
			return
		}
		if s.backup == nil {
			s.writeStatus(w, apierrors.NewServiceUnavailable("no member can serve a snapshot"))
			return
		}
		s.backup(w, r)
	case len(parts) == 5 && parts[4] == "backups" && r.Method == http.MethodGet && s.backups != nil:
		s.writeJSON(w, http.StatusOK, s.backups)
	case len(parts) == 5 && parts[4] == "recover" && r.Method == http.MethodPost && s.recover != nil:
		s.recover(w, r)
	case len(parts) == 5 && parts[4] == "defrag" && r.Method == http.MethodPost && s.defrag != nil:
		s.defrag(w, r)
	case len(parts) == 5 && parts[4] == "restore" && r.Method == http.MethodPost && s.restore != nil:
		s.restore(w, r)
	default:
		s.writeStatus(w, apierrors.NewMethodNotSupported(etcdinstancesResource, r.Method))
	}
}

func (s *fakeServer) list(w http.ResponseWriter, r *http.Request, ns string) {
	s.mu.Lock()
	list := &v1beta1.ETCDInstanceList{TypeMeta: metav1.TypeMeta{APIVersion: "etcdaas.dev/v1beta1", Kind: "ETCDInstanceList"}}
	list.ResourceVersion = strconv.Itoa(s.rv)
	for _, key := range sortedKeys(s.objects) {
		in := s.objects[key]
		if ns == "" || in.Namespace == ns {
			list.Items = append(list.Items, *in)
		}
	}
	s.mu.Unlock()
	s.writeObject(w, r, list)
}

func sortedKeys(m map[string]*v1beta1.ETCDInstance) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := range keys {
		for j := i + 1; j < len(keys); j++ {
			if keys[j] < keys[i] {
				keys[i], keys[j] = keys[j], keys[i]
			}
		}
	}
	return keys
}

func (s *fakeServer) validateReplicas(name string, replicas int32, path *field.Path) error {
	if replicas < 1 || replicas > 9 {
		return apierrors.NewInvalid(etcdaas.Kind("ETCDInstance"), name, field.ErrorList{
			field.Invalid(path, replicas, "must be between 1 and 9, inclusive"),
		})
	}
	return nil
}

func (s *fakeServer) create(w http.ResponseWriter, r *http.Request, ns string, body []byte) {
	in := &v1beta1.ETCDInstance{}
	if err := json.Unmarshal(body, in); err != nil {
		s.writeStatus(w, apierrors.NewBadRequest(err.Error()))
		return
	}
	if in.Spec.Replicas == nil {
		replicas := v1beta1.DefaultReplicas
		in.Spec.Replicas = &replicas
	}
	if in.Spec.Version == "" {
		in.Spec.Version = etcdaas.DefaultVersion
	}
	if err := s.validateReplicas(in.Name, *in.Spec.Replicas, field.NewPath("spec", "replicas")); err != nil {
		s.writeStatus(w, err)
		return
	}
	if *in.Spec.Replicas%2 == 0 {
		w.Header().Add("Warning", `299 - "spec.replicas: an even number of members tolerates no more failures than one fewer"`)
	}
	in.Namespace = ns
	in.CreationTimestamp = metav1.NewTime(time.Now().Add(-90 * time.Second).Truncate(time.Second))
	s.mu.Lock()
	if _, exists := s.objects[ns+"/"+in.Name]; exists {
		s.mu.Unlock()
		s.writeStatus(w, apierrors.NewAlreadyExists(etcdinstancesResource, in.Name))
		return
	}
	s.rv++
	in.ResourceVersion = strconv.Itoa(s.rv)
	in.UID = types.UID(fmt.Sprintf("uid-%d", s.rv))
	if r.URL.Query().Get("dryRun") == "" {
		s.objects[ns+"/"+in.Name] = in.DeepCopy()
	}
	s.mu.Unlock()
	in.APIVersion, in.Kind = "etcdaas.dev/v1beta1", "ETCDInstance"
	s.writeJSON(w, http.StatusCreated, in)
}

func (s *fakeServer) getOne(w http.ResponseWriter, r *http.Request, ns, name string) {
	s.mu.Lock()
	in, ok := s.objects[ns+"/"+name]
	if ok {
		if left, deleting := s.deleting[ns+"/"+name]; deleting {
			if left <= 0 {
				delete(s.objects, ns+"/"+name)
				delete(s.deleting, ns+"/"+name)
				ok = false
			} else {
				s.deleting[ns+"/"+name] = left - 1
			}
		}
	}
	var out *v1beta1.ETCDInstance
	if ok {
		out = in.DeepCopy() // under the lock: tests change stored objects from other goroutines
	}
	s.mu.Unlock()
	if !ok {
		s.writeStatus(w, apierrors.NewNotFound(etcdinstancesResource, name))
		return
	}
	out.APIVersion, out.Kind = "etcdaas.dev/v1beta1", "ETCDInstance"
	s.writeObject(w, r, out)
}

// tableScheme converts the stored v1beta1 objects to the internal type the server's table
// convertor renders.
var tableScheme = func() *runtime.Scheme {
	scheme := runtime.NewScheme()
	install.Install(scheme)
	return scheme
}()

// writeObject answers with obj or, when the client asks for as=Table, with the table the
// real server renders for it, each row carrying its object's metadata (includeObject=Metadata,
// the server's default for tables).
func (s *fakeServer) writeObject(w http.ResponseWriter, r *http.Request, obj runtime.Object) {
	if !strings.Contains(r.Header.Get("Accept"), "as=Table") {
		s.writeJSON(w, http.StatusOK, obj)
		return
	}
	internal, err := tableScheme.ConvertToVersion(obj, etcdaas.SchemeGroupVersion)
	if err != nil {
		s.writeStatus(w, apierrors.NewInternalError(err))
		return
	}
	table, err := etcdinstance.TableConvertor{}.ConvertToTable(r.Context(), internal, &metav1.TableOptions{})
	if err != nil {
		s.writeStatus(w, apierrors.NewInternalError(err))
		return
	}
	table.APIVersion, table.Kind = "meta.k8s.io/v1", "Table"
	for i := range table.Rows {
		m, err := meta.Accessor(table.Rows[i].Object.Object)
		if err != nil {
			s.writeStatus(w, apierrors.NewInternalError(err))
			return
		}
		partial := &metav1.PartialObjectMetadata{
			TypeMeta:   metav1.TypeMeta{APIVersion: "meta.k8s.io/v1", Kind: "PartialObjectMetadata"},
			ObjectMeta: metav1.ObjectMeta{Namespace: m.GetNamespace(), Name: m.GetName(), UID: m.GetUID(), CreationTimestamp: m.GetCreationTimestamp()},
		}
		raw, err := json.Marshal(partial)
		if err != nil {
			s.writeStatus(w, apierrors.NewInternalError(err))
			return
		}
		table.Rows[i].Object = runtime.RawExtension{Raw: raw}
	}
	s.writeJSON(w, http.StatusOK, table)
}

func (s *fakeServer) delete(w http.ResponseWriter, ns, name string, body []byte) {
	var opts metav1.DeleteOptions
	if len(body) > 0 {
		if err := json.Unmarshal(body, &opts); err != nil {
			s.writeStatus(w, apierrors.NewBadRequest(err.Error()))
			return
		}
	}
	s.mu.Lock()
	in, ok := s.objects[ns+"/"+name]
	if !ok {
		s.mu.Unlock()
		s.writeStatus(w, apierrors.NewNotFound(etcdinstancesResource, name))
		return
	}
	if opts.Preconditions != nil && opts.Preconditions.UID != nil && *opts.Preconditions.UID != in.UID {
		s.mu.Unlock()
		s.writeStatus(w, apierrors.NewConflict(etcdinstancesResource, name, fmt.Errorf("precondition failed: UID in precondition: %s, UID in object meta: %s", *opts.Preconditions.UID, in.UID)))
		return
	}
	if s.deleteDelay > 0 {
		s.deleting[ns+"/"+name] = s.deleteDelay
	} else {
		delete(s.objects, ns+"/"+name)
	}
	s.mu.Unlock()
	s.writeJSON(w, http.StatusOK, metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess})
}

func (s *fakeServer) scale(w http.ResponseWriter, r *http.Request, ns, name string, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.objects[ns+"/"+name]
	if !ok {
		s.writeStatus(w, apierrors.NewNotFound(etcdinstancesResource, name))
		return
	}
	toScale := func() *autoscalingv1.Scale {
		return &autoscalingv1.Scale{
			TypeMeta:   metav1.TypeMeta{APIVersion: "autoscaling/v1", Kind: "Scale"},
			ObjectMeta: metav1.ObjectMeta{Name: in.Name, Namespace: in.Namespace, ResourceVersion: in.ResourceVersion, UID: in.UID},
			Spec:       autoscalingv1.ScaleSpec{Replicas: *in.Spec.Replicas},
			Status:     autoscalingv1.ScaleStatus{Replicas: in.Status.Replicas, Selector: in.Status.Selector},
		}
	}
	switch r.Method {
	case http.MethodGet:
		s.writeJSON(w, http.StatusOK, toScale())
	case http.MethodPut:
		var scale autoscalingv1.Scale
		if err := json.Unmarshal(body, &scale); err != nil {
			s.writeStatus(w, apierrors.NewBadRequest(err.Error()))
			return
		}
		if s.conflicts > 0 {
			s.conflicts--
			s.rv++
			in.ResourceVersion = strconv.Itoa(s.rv)
		}
		if scale.ResourceVersion != "" && scale.ResourceVersion != in.ResourceVersion {
			s.writeStatus(w, apierrors.NewConflict(etcdinstancesResource, name, fmt.Errorf("the object has been modified; please apply your changes to the latest version and try again")))
			return
		}
		if err := s.validateReplicas(name, scale.Spec.Replicas, field.NewPath("spec", "replicas")); err != nil {
			s.writeStatus(w, err)
			return
		}
		replicas := scale.Spec.Replicas
		in.Spec.Replicas = &replicas
		s.rv++
		in.ResourceVersion = strconv.Itoa(s.rv)
		s.writeJSON(w, http.StatusOK, toScale())
	default:
		s.writeStatus(w, apierrors.NewMethodNotSupported(etcdinstancesResource, r.Method))
	}
}

// kubeconfig writes a kubeconfig for the fake server whose context namespace is ns.
func (s *fakeServer) kubeconfig(t *testing.T, ns string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	config := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: %s
users:
- name: fake
  user:
    token: test-token
contexts:
- name: fake
  context: {cluster: fake, user: fake, namespace: %s}
- name: other
  context: {cluster: fake, user: fake, namespace: other-ns}
current-context: fake
`, s.srv.URL, ns)
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// result is what one run of the plugin printed and returned.
type result struct {
	stdout, stderr string
	code           int
}

// runPlugin runs the plugin with args, stdin and a terminal-ness for stderr.
func runPlugin(t *testing.T, stdin string, terminal bool, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	f := NewFactory(genericiooptions.IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut})
	f.isTerminal = func(io.Writer) bool { return terminal }
	f.verifySnapshot = verifyInChildProcess
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code := run(ctx, f, args)
	return result{stdout: out.String(), stderr: errOut.String(), code: code}
}

// runAgainst runs the plugin against the fake server with the kubeconfig's namespace "team".
func (s *fakeServer) run(t *testing.T, args ...string) result {
	t.Helper()
	return runPlugin(t, "", false, append([]string{"--kubeconfig", s.kubeconfig(t, "team")}, args...)...)
}

func int32p(v int32) *int32 { return &v }

// TestMain makes the test binary serve as the snapshot verifier child, as the real
// executable does, so that tests exercise the child-process check.
func TestMain(m *testing.M) {
	if path, ok := os.LookupEnv(snapshotVerifierEnv); ok {
		os.Exit(runSnapshotVerifier(path, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}
