package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	goruntime "runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1alpha1"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/conversion"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
	"github.com/etcdaas/etcdaas/test/e2e/framework"
)

// Settings of BenchmarkAPI (environment variables).
const (
	// ObjectsEnv is the number of objects created by 32 clients per repetition, target and
	// version, and so the size of each LIST (default 1000); 1 client creates a fifth of it.
	ObjectsEnv = "ETCDAAS_BENCH_OBJECTS"
	// RepetitionsEnv is the number of repetitions of every scenario (default 3, at least 3).
	RepetitionsEnv = "ETCDAAS_BENCH_REPETITIONS"
	// EncodingEnv is how etcdaas is spoken to and stores objects: "protobuf" (default; its
	// clients send and accept protobuf, as client-go's clients of built-in types do, and
	// objects are stored as protobuf) or "json" (JSON clients and JSON storage, as before
	// protobuf). The CRDs always get JSON: a CRD cannot serve protobuf.
	EncodingEnv = "ETCDAAS_BENCH_ENCODING"
)

// benchEncoding reads EncodingEnv: true for protobuf, false for JSON.
func benchEncoding(b testing.TB) bool {
	b.Helper()
	switch v := os.Getenv(EncodingEnv); v {
	case "", "protobuf":
		return true
	case "json":
		return false
	default:
		b.Fatalf("%s=%q: want protobuf or json", EncodingEnv, v)
		return false
	}
}

// The names of the subjects and peers in the report.
const (
	viaAggregator = "etcdaas via kube-apiserver"
	direct        = "etcdaas direct"
	plainCRD      = "CRD"
	webhookCRD    = "CRD + conversion webhook"
	rawEtcd       = "raw etcd (clientv3)"
)

// versions are the served versions; v1beta1 is the storage version of every target.
var versions = []string{v1beta1.SchemeGroupVersion.Version, v1alpha1.SchemeGroupVersion.Version}

// apiSettings sizes one run of the API scenarios.
type apiSettings struct {
	objects, repetitions, gets, lists int
	// watchers and fanoutObjects size the watch fan-out; backupBytes the backup stream.
	watchers, fanoutObjects int
	backupBytes             int64
	// deadline bounds every timed loop.
	deadline time.Duration
}

func apiSettingsFromEnv(b *testing.B) apiSettings {
	b.Helper()
	s := apiSettings{objects: 1000, repetitions: 3, gets: 200, lists: 10, watchers: 1000, fanoutObjects: 200, deadline: 5 * time.Minute}
	backupMiB := 100
	for env, v := range map[string]*int{ObjectsEnv: &s.objects, RepetitionsEnv: &s.repetitions, WatchersEnv: &s.watchers, BackupSizeEnv: &backupMiB} {
		if value := os.Getenv(env); value != "" {
			n, err := strconv.Atoi(value)
			if err != nil || n <= 0 {
				b.Fatalf("%s=%q is not a positive number", env, value)
			}
			*v = n
		}
	}
	if s.repetitions < 3 {
		b.Fatalf("%s must be at least 3: the report gives medians with min and max", RepetitionsEnv)
	}
	if backupMiB > backupQuotaBytes>>21 {
		b.Fatalf("%s must be at most %d: the member's quota is %d MiB", BackupSizeEnv, backupQuotaBytes>>21, backupQuotaBytes>>20)
	}
	s.backupBytes = int64(backupMiB) << 20
	return s
}

// apiEnv is the control plane with its four targets and raw etcd.
type apiEnv struct {
	cluster *framework.Cluster
	targets []target
	etcd    *clientv3.Client
	// objects are the ETCDInstance to create, per version (apiVersion set per target), and
	// typed the same as typed objects, for the targets that create through the clientset.
	objects map[string]map[string]any
	typed   map[string]runtime.Object
	// rawValue is the value of the raw etcd peer (see storedValue).
	rawValue string
	// watchCache is false when both servers run with --watch-cache=false.
	watchCache bool
	// protobuf is true when etcdaas's clients use protobuf and it stores protobuf.
	protobuf bool
	// backupMember is the member of the backup instance once started (startBackupInstance).
	backupMember *etcdcluster.Access
	// runtimeEnv is etcdaas-apiserver's GOGC and GOMEMLIMIT (apiServerRuntimeEnv).
	runtimeEnv []string
}

// BenchmarkAPI measures create, GET and LIST of ETCDInstances on etcdaas-apiserver
// (aggregated mode) through kube-apiserver's aggregator and directly, next to a CRD of the
// same objects without conversion, the same CRD with a conversion webhook served by
// pkg/conversion, and raw etcd puts, gets and ranges of the same size, all in one control
// plane and one run. Then the watch fan-out (ETCDAAS_BENCH_WATCHERS watchers) on etcdaas and
// on the CRD, and the backup stream of a one-member instance (ETCDAAS_BENCH_BACKUP_MIB) next
// to a clientv3 snapshot of the same member. It writes _output/bench/api.md and api.json.
func BenchmarkAPI(b *testing.B) {
	benchAPI(b, true)
}

// BenchmarkAPIWithoutWatchCache is BenchmarkAPI with kube-apiserver and etcdaas-apiserver
// both run with --watch-cache=false: every GET and LIST reads etcd. It writes
// _output/bench/api-without-watch-cache.{md,json}.
func BenchmarkAPIWithoutWatchCache(b *testing.B) {
	benchAPI(b, false)
}

func benchAPI(b *testing.B, watchCache bool) {
	s := apiSettingsFromEnv(b)
	env := startAPIEnv(b, watchCache)
	var r *report
	for b.Loop() {
		r = env.run(b, s)
	}
	dir, err := benchDir()
	if err != nil {
		b.Fatal(err)
	}
	md, err := r.write(dir)
	if err != nil {
		b.Fatal(err)
	}
	fmt.Print(md)
	fmt.Printf("written to %s/%s.{md,json}\n", dir, r.Name)
}

// startAPIEnv starts the control plane, the webhook and the two CRDs.
func startAPIEnv(b testing.TB, watchCache bool) *apiEnv {
	b.Helper()
	// etcdaas-controller starts only for the backup scenario, and acts only in its namespace.
	opts := framework.ClusterOptions{ControllerArgs: backupControllerArgs}
	if !watchCache {
		opts.KubeAPIServerArgs = []string{"--watch-cache=false"}
		opts.EtcdaasAPIServerArgs = []string{"--watch-cache=false"}
	}
	opts.EtcdaasAPIServerEnv = apiServerRuntimeEnv(b)
	protobuf := benchEncoding(b)
	if !protobuf {
		opts.EtcdaasAPIServerArgs = append(opts.EtcdaasAPIServerArgs, "--storage-media-type="+runtime.ContentTypeJSON)
	}
	c := framework.StartClusterWith(b, opts)
	ctx := b.Context()
	webhook, stop, err := startConversionWebhook(ctx, c)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(stop)
	for _, crd := range []struct {
		group string
		hook  bool
	}{{plainCRDGroup, false}, {webhookCRDGroup, true}} {
		cfg := webhook
		if !crd.hook {
			cfg = nil
		}
		if err := createCRD(ctx, c, peerCRD(crd.group, cfg)); err != nil {
			b.Fatal(err)
		}
	}
	directConfig := rest.CopyConfig(c.AdminConfig)
	directConfig.Host = "https://" + framework.HostPort(c.EtcdaasPort)
	directConfig.CAData, directConfig.CAFile, directConfig.ServerName = c.PKI.ServingCA.CertPEM, "", "localhost"
	env := &apiEnv{cluster: c, watchCache: watchCache, protobuf: protobuf, runtimeEnv: opts.EtcdaasAPIServerEnv}
	for _, t := range []struct {
		name, prefix, group string
		config              *rest.Config
		protobuf            bool
	}{
		{viaAggregator, "agg", framework.Group, c.AdminConfig, protobuf},
		{direct, "dir", framework.Group, directConfig, protobuf},
		{plainCRD, "crd", plainCRDGroup, c.AdminConfig, false},
		{webhookCRD, "hook", webhookCRDGroup, c.AdminConfig, false},
	} {
		target, err := newTarget(t.name, t.prefix, t.group, t.config, t.protobuf)
		if err != nil {
			b.Fatal(err)
		}
		env.targets = append(env.targets, target)
	}
	env.etcd, err = clientv3.New(clientv3.Config{Endpoints: []string{c.EtcdaasEtcdEndpoint()}, DialTimeout: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = env.etcd.Close() })
	if env.objects, env.typed, err = benchObjects(); err != nil {
		b.Fatal(err)
	}
	return env
}

// benchObjects is a three-member ETCDInstance with TLS in each served version, as a user
// would create it: unstructured and typed.
func benchObjects() (map[string]map[string]any, map[string]runtime.Object, error) {
	beta := &v1beta1.ETCDInstance{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1beta1.SchemeGroupVersion.String(), Kind: "ETCDInstance"},
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"team": "shop", "tier": "backend"}},
		Spec:       v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](3), Version: "3.7", TLS: &v1beta1.TLSSpec{Enabled: true}},
	}
	alpha, err := conversion.New().Convert(beta, v1alpha1.SchemeGroupVersion)
	if err != nil {
		return nil, nil, err
	}
	out := map[string]map[string]any{}
	typed := map[string]runtime.Object{"v1beta1": beta, "v1alpha1": alpha}
	for version, obj := range typed {
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
		if err != nil {
			return nil, nil, err
		}
		delete(u, "status")
		out[version] = u
	}
	return out, typed, nil
}

// object is the ETCDInstance name in namespace for target t in version: typed for a target
// that creates through the clientset, unstructured otherwise (in t's group; the do-nothing
// backend gets etcdaas's object).
func (e *apiEnv) object(t target, version, namespace, name string) runtime.Object {
	if t.typed != nil {
		obj := e.typed[version].DeepCopyObject()
		if m, err := apimeta.Accessor(obj); err == nil {
			m.SetNamespace(namespace)
			m.SetName(name)
		}
		return obj
	}
	u := &unstructured.Unstructured{Object: runtime.DeepCopyJSON(e.objects[version])}
	group := t.group
	if group == nullGroup {
		group = framework.Group
	}
	u.SetAPIVersion(group + "/" + version)
	u.SetNamespace(namespace)
	u.SetName(name)
	return u
}

// namespaceOf is where target t creates its objects of one create scenario.
func namespaceOf(t target, version string, clients, rep int) string {
	return fmt.Sprintf("%s-%s-c%d-r%d", t.prefix, version, clients, rep)
}

func objectName(i int) string { return fmt.Sprintf("instance-%05d", i) }

// measurements collects the samples of every (scenario, version, subject).
type measurements map[[3]string][]float64

func (m measurements) add(scenario, version, subject string, v float64) {
	k := [3]string{scenario, version, subject}
	m[k] = append(m[k], v)
}

func (m measurements) figure(scenario, version, subject string) figure {
	samples := m[[3]string{scenario, version, subject}]
	if len(samples) == 0 {
		return figure{}
	}
	return summarize(samples)
}

// run measures every scenario s.repetitions times; the targets take turns in a rotating
// order so that none is always first or last.
func (e *apiEnv) run(b testing.TB, s apiSettings) *report {
	b.Helper()
	m := measurements{}
	rss, err := newRSSGrowth(e.cluster)
	if err != nil {
		b.Fatal(err)
	}
	for rep := range s.repetitions {
		order := slices.Clone(e.targets)
		for range rep % len(order) {
			order = append(order[1:], order[0])
		}
		for _, clients := range []int{1, 32} {
			count := createCount(s, clients)
			for _, version := range versions {
				for _, t := range order {
					rate, err := e.create(b.Context(), s, t, version, clients, rep, count)
					if err != nil {
						b.Fatalf("%s: create in %s with %d clients: %v", t.name, version, clients, err)
					}
					m.add(createScenario(clients), version, t.name, rate)
				}
			}
			rate, err := e.putRaw(b.Context(), s, clients, rep, count)
			if err != nil {
				b.Fatal(err)
			}
			m.add(createScenario(clients), "", rawEtcd, rate)
		}
		// Each server stores as many objects: two targets, both versions, both create scenarios.
		stored := (rep + 1) * 2 * len(versions) * (createCount(s, 1) + createCount(s, 32))
		perObject, err := rss.perObject(stored)
		if err != nil {
			b.Fatal(err)
		}
		m.add(rssScenario, "", etcdaasServer, perObject[0])
		m.add(rssScenario, "", kubeServer, perObject[1])
		if err := e.reads(b.Context(), s, order, rep, m); err != nil {
			b.Fatal(err)
		}
		b.Logf("repetition %d of %d done", rep+1, s.repetitions)
	}
	// The fan-out and the backup come last: their objects and streams must not count in
	// the RSS per stored object. They do not depend on the watch cache setting.
	var forced map[string][]float64
	if e.watchCache {
		if forced, err = e.fanOuts(b.Context(), s, m); err != nil {
			b.Fatal(err)
		}
		b.Logf("watch fan-out done")
		if err := e.backups(b.Context(), s, m); err != nil {
			b.Fatal(err)
		}
		b.Logf("backup streams done")
	}
	r := e.report(s, m)
	if e.watchCache {
		e.reportFanOutAndBackup(r, s, m, forced)
	}
	return r
}

func createCount(s apiSettings, clients int) int {
	if clients == 1 {
		return max(s.objects/5, 1)
	}
	return s.objects
}

func createScenario(clients int) string {
	if clients == 1 {
		return "create, 1 client"
	}
	return fmt.Sprintf("create, %d clients", clients)
}

// create makes count objects for target t from clients clients in a new namespace and
// returns the objects created per second.
func (e *apiEnv) create(ctx context.Context, s apiSettings, t target, version string, clients, rep, count int) (float64, error) {
	namespace := namespaceOf(t, version, clients, rep)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	if _, err := e.cluster.Kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return 0, err
	}
	return perSecond(ctx, s.deadline, clients, count, func(ctx context.Context, i int) error {
		return t.create(ctx, version, e.object(t, version, namespace, objectName(i)))
	})
}

// rawKey is the etcd key of raw object i of one create scenario.
func rawKey(clients, rep, i int) string {
	return fmt.Sprintf("/bench-raw/c%d-r%d/%s", clients, rep, objectName(i))
}

// putRaw puts count values of the size of a stored ETCDInstance into etcd from clients
// goroutines sharing one clientv3 client, and returns the puts per second.
func (e *apiEnv) putRaw(ctx context.Context, s apiSettings, clients, rep, count int) (float64, error) {
	value, err := e.storedValue(ctx)
	if err != nil {
		return 0, err
	}
	return perSecond(ctx, s.deadline, clients, count, func(ctx context.Context, i int) error {
		_, err := e.etcd.Put(ctx, rawKey(clients, rep, i), value)
		return err
	})
}

// storedValue is the JSON of an ETCDInstance created in etcdaas, read back with its
// metadata: the value, and so the data size, of the raw etcd peer.
func (e *apiEnv) storedValue(ctx context.Context) (string, error) {
	if e.rawValue != "" {
		return e.rawValue, nil
	}
	t := e.targets[1]
	namespace := namespaceOf(t, versions[0], 1, 0)
	obj, err := t.resource(versions[0]).Namespace(namespace).Get(ctx, objectName(0), metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	data, err := json.Marshal(obj)
	if err != nil {
		return "", err
	}
	e.rawValue = string(data)
	return e.rawValue, nil
}

// perSecond runs op(i) for i in [0, count) from clients goroutines and returns the
// operations per second; the first error stops it, and so does the deadline.
func perSecond(ctx context.Context, deadline time.Duration, clients, count int, op func(ctx context.Context, i int) error) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	start := time.Now()
	for range clients {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < count; i = int(next.Add(1) - 1) {
				if err := ctx.Err(); err != nil { // the deadline, or another client failed
					errs <- err
					return
				}
				if err := op(ctx, i); err != nil {
					errs <- fmt.Errorf("operation %d: %w", i, err)
					cancel()
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return float64(count) / elapsed.Seconds(), nil
}

// medianMillis runs op n times one after the other and returns the median duration in
// milliseconds; the deadline bounds the whole loop.
func medianMillis(ctx context.Context, deadline time.Duration, n int, op func(ctx context.Context) error) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	durations := make([]float64, 0, n)
	for range n {
		start := time.Now()
		if err := op(ctx); err != nil {
			return 0, err
		}
		durations = append(durations, float64(time.Since(start).Microseconds())/1000)
	}
	return summarize(durations).Median, nil
}

// readScenario is a GET and a LIST with one resourceVersion.
type readScenario struct{ get, list, rv string }

// readScenarios are the reads: with the watch cache, a GET with resourceVersion "" is
// served from etcd, with "0" from the watch cache; a LIST with "0" from the watch cache,
// with "" (a consistent list) from the watch cache once it has caught up with etcd's
// current revision. Without it, every read is served from etcd.
func (e *apiEnv) readScenarios() []readScenario {
	if !e.watchCache {
		return []readScenario{{`GET rv=""`, `LIST rv=""`, ""}, {`GET rv="0"`, `LIST rv="0"`, "0"}}
	}
	return []readScenario{
		{`GET rv="" (etcd)`, `LIST rv="" (consistent)`, ""},
		{`GET rv="0" (watch cache)`, `LIST rv="0" (watch cache)`, "0"},
	}
}

// reads measures GET of one object and LIST of the namespace of the 32-client creates of
// repetition rep (s.objects objects, stored in v1beta1) in each version, and the raw etcd
// get of one key and range of as many keys. The timed reads take the JSON response whole
// without decoding it (see target.read).
func (e *apiEnv) reads(ctx context.Context, s apiSettings, order []target, rep int, m measurements) error {
	for _, version := range versions {
		for _, t := range order {
			namespace := namespaceOf(t, versions[0], 32, rep)
			// Decoded once, untimed: the list holds every object in this version.
			l, err := t.resource(version).Namespace(namespace).List(ctx, metav1.ListOptions{})
			if err == nil && len(l.Items) != s.objects {
				err = fmt.Errorf("listed %d objects, want %d", len(l.Items), s.objects)
			}
			if err != nil {
				return fmt.Errorf("%s: LIST in %s: %w", t.name, version, err)
			}
			for _, sc := range e.readScenarios() {
				get, err := medianMillis(ctx, s.deadline, s.gets, func(ctx context.Context) error {
					return t.read(ctx, version, namespace, objectName(0), sc.rv)
				})
				if err != nil {
					return fmt.Errorf("%s: %s in %s: %w", t.name, sc.get, version, err)
				}
				m.add(sc.get, version, t.name, get)
				list, err := medianMillis(ctx, s.deadline, s.lists, func(ctx context.Context) error {
					return t.read(ctx, version, namespace, "", sc.rv)
				})
				if err != nil {
					return fmt.Errorf("%s: %s in %s: %w", t.name, sc.list, version, err)
				}
				m.add(sc.list, version, t.name, list)
			}
		}
	}
	return e.rawReads(ctx, s, rep, m)
}

// rawReads measures the raw etcd peers of the read scenarios: etcd has no cache, so each
// scenario's peer is a plain get of one key, or a range of s.objects keys, measured anew.
func (e *apiEnv) rawReads(ctx context.Context, s apiSettings, rep int, m measurements) error {
	prefix := rawKey(32, rep, 0)
	prefix = prefix[:len(prefix)-len(objectName(0))]
	for _, sc := range e.readScenarios() {
		get, err := medianMillis(ctx, s.deadline, s.gets, func(ctx context.Context) error {
			resp, err := e.etcd.Get(ctx, rawKey(32, rep, 0))
			if err == nil && len(resp.Kvs) != 1 {
				err = fmt.Errorf("got %d keys, want 1", len(resp.Kvs))
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("raw etcd get: %w", err)
		}
		m.add(sc.get, "", rawEtcd, get)
		list, err := medianMillis(ctx, s.deadline, s.lists, func(ctx context.Context) error {
			resp, err := e.etcd.Get(ctx, prefix, clientv3.WithPrefix())
			if err == nil && len(resp.Kvs) != s.objects {
				err = fmt.Errorf("ranged %d keys, want %d", len(resp.Kvs), s.objects)
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("raw etcd range: %w", err)
		}
		m.add(sc.list, "", rawEtcd, list)
	}
	return nil
}

// report sets every figure next to its peers, with the goals as ratios.
func (e *apiEnv) report(s apiSettings, m measurements) *report {
	name := "api"
	if !e.watchCache {
		name = "api-without-watch-cache"
	}
	encoding := "protobuf (clients and storage; the CRDs: JSON, they cannot serve protobuf)"
	if !e.protobuf {
		name += "-json"
		encoding = "JSON (clients and storage)"
	}
	r := &report{Name: name, Time: time.Now(), Repetitions: s.repetitions, Settings: map[string]string{
		"objects per create scenario (32 clients; LIST size)":  strconv.Itoa(s.objects),
		"objects per create scenario (1 client)":               strconv.Itoa(createCount(s, 1)),
		"GETs and LISTs per repetition (figure: their median)": fmt.Sprintf("%d and %d", s.gets, s.lists),
		"raw etcd value (JSON of a stored ETCDInstance)":       fmt.Sprintf("%d bytes", len(e.rawValue)),
		"storage version":                versions[0],
		"CPUs":                           strconv.Itoa(goruntime.NumCPU()),
		"watch cache":                    strconv.FormatBool(e.watchCache),
		"etcdaas encoding":               encoding,
		"etcdaas-apiserver's Go runtime": describeRuntimeEnv(e.runtimeEnv),
	}}
	add := func(scenario, version, unit, subject, peer string, g *goal) {
		peerVersion := version
		if peer == rawEtcd {
			peerVersion = ""
		}
		r.Comparisons = append(r.Comparisons, compare(scenario, version, unit, subject, m.figure(scenario, version, subject),
			peer, m.figure(scenario, peerVersion, peer), g))
	}
	for _, clients := range []int{1, 32} {
		var throughAggregator, directToCRD, directToEtcd *goal
		if clients == 32 {
			throughAggregator, directToCRD, directToEtcd = &goal{true, 1.5}, &goal{true, 2.5}, &goal{true, 0.15}
		}
		for _, version := range versions {
			sc := createScenario(clients)
			add(sc, version, "objects/s", viaAggregator, plainCRD, throughAggregator)
			add(sc, version, "objects/s", viaAggregator, webhookCRD, nil)
			add(sc, version, "objects/s", direct, plainCRD, directToCRD)
			add(sc, version, "objects/s", direct, rawEtcd, directToEtcd)
		}
	}
	add(rssScenario, "", "KiB", etcdaasServer, kubeServer, nil)
	for _, list := range []bool{false, true} {
		for _, sc := range e.readScenarios() {
			for _, version := range versions {
				scenario, g, hookGoal := sc.get, (*goal)(nil), (*goal)(nil)
				switch {
				case !list && sc.rv == "0" && e.watchCache:
					g = &goal{false, 1.5} // GET from the watch cache through the aggregator
				case list:
					scenario = sc.list
					if version != versions[0] {
						g = &goal{false, 0.2} // LIST in the non-storage version
						if !e.watchCache {
							hookGoal = &goal{false, 0.02}
						}
					}
				}
				add(scenario, version, "ms", viaAggregator, plainCRD, g)
				add(scenario, version, "ms", viaAggregator, webhookCRD, hookGoal)
				add(scenario, version, "ms", direct, plainCRD, nil)
				add(scenario, version, "ms", direct, rawEtcd, nil)
			}
		}
	}
	return r
}

// The RSS scenario: the growth of each server's resident memory since before the first
// create, divided by the objects it stores (etcdaas-apiserver: those created through the
// aggregator and directly; kube-apiserver: those of the two CRDs, as many).
const (
	rssScenario   = "RSS growth per stored object"
	etcdaasServer = "etcdaas-apiserver"
	kubeServer    = "kube-apiserver (CRs)"
)

// rssGrowth measures the RSS growth of etcdaas-apiserver and kube-apiserver.
type rssGrowth struct {
	pids [2]int
	base [2]float64
}

func newRSSGrowth(c *framework.Cluster) (*rssGrowth, error) {
	g := &rssGrowth{pids: [2]int{c.Process("etcdaas-apiserver").Pid(), c.Process("kube-apiserver").Pid()}}
	for i, pid := range g.pids {
		var err error
		if g.base[i], err = rssMiB(pid); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// perObject is each server's RSS growth in KiB divided by objects.
func (g *rssGrowth) perObject(objects int) ([2]float64, error) {
	var out [2]float64
	for i, pid := range g.pids {
		now, err := rssMiB(pid)
		if err != nil {
			return out, err
		}
		out[i] = (now - g.base[i]) * 1024 / float64(objects)
	}
	return out, nil
}

// reportFanOutAndBackup adds the watch fan-out and the backup stream to r.
func (e *apiEnv) reportFanOutAndBackup(r *report, s apiSettings, m measurements, forced map[string][]float64) {
	r.Settings["watch fan-out"] = fmt.Sprintf("%d watches on one client, then %d creates by %d clients, in a new namespace per repetition",
		s.watchers, s.fanoutObjects, fanoutCreators)
	r.Settings["watch fan-out: watchers the server closed as unresponsive, per repetition"] = forcedCloses(forced, e.targets[:3])
	r.Settings["backup stream"] = fmt.Sprintf("a one-member instance run by etcdaas-controller (local backend) holding %d MiB in values of %d KiB; RSS sampled every %s",
		s.backupBytes>>20, backupValueSize>>10, rssSampleEvery)
	// peer names the figure peerScenario of peerSubject.
	add := func(scenario, unit, subject, peer, peerScenario, peerSubject string, g *goal) {
		r.Comparisons = append(r.Comparisons, compare(scenario, "", unit, subject, m.figure(scenario, "", subject),
			peer, m.figure(peerScenario, "", peerSubject), g))
	}
	for _, subject := range []string{viaAggregator, direct, plainCRD} {
		var g *goal
		if subject == viaAggregator {
			g = &goal{true, 1} // every watcher gets every event
		}
		add(fanoutComplete, "watchers", subject, watchersOpened, watchersOpened, subject, g)
	}
	add(fanoutDelivery, "s", viaAggregator, plainCRD, fanoutDelivery, plainCRD, nil)
	add(fanoutDelivery, "s", direct, plainCRD, fanoutDelivery, plainCRD, nil)
	add(backupScenario, "MiB/s", viaAggregator, snapshotPeer, backupScenario, snapshotPeer, &goal{true, 0.9})
	add(backupScenario, "MiB/s", direct, snapshotPeer, backupScenario, snapshotPeer, nil)
	add(backupCPU, "CPU-s/GiB", viaAggregator, snapshotPeer, backupCPU, snapshotPeer, nil)
	add(backupCPU, "CPU-s/GiB", direct, snapshotPeer, backupCPU, snapshotPeer, nil)
	for _, subject := range []string{viaAggregator, direct} {
		// Flat: the server grows by at most a tenth of what it streams.
		add(backupRSSScenario, "MiB", subject, snapshotSize, snapshotSize, subject, &goal{false, 0.1})
	}
	add(backupKubeRSS, "MiB", viaAggregator, snapshotSize, snapshotSize, viaAggregator, nil)
}
