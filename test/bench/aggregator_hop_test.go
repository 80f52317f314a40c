package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	goruntime "runtime"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
)

// BenchmarkAggregatorHop measures what kube-apiserver's aggregator leaves to an aggregated
// server, for every goal issue 11 sets through it. Next to etcdaas-apiserver (through the
// aggregator and directly) and the CRD, it registers a second APIService whose backend, an
// HTTP/2 server on loopback, answers from bytes fixed up front (etcdaas's own answers,
// protobuf; JSON with ETCDAAS_BENCH_ENCODING=json) without authenticating, authorizing,
// decoding or encoding anything: a GET of one object from the watch cache (resourceVersion
// "0"), creates from 1 and 32 clients, LISTs of ETCDAAS_BENCH_OBJECTS objects in v1alpha1, and
// a backup stream of ETCDAAS_BENCH_BACKUP_MIB next to a clientv3 snapshot of a member holding
// as much. Each figure is a median per repetition, the targets taking turns in a rotating
// order. It writes _output/bench/aggregator-hop.{md,json}.
func BenchmarkAggregatorHop(b *testing.B) {
	s := apiSettingsFromEnv(b)
	env := startAPIEnv(b, true)
	hop, err := env.startAggregatorHop(b.Context(), s)
	if err != nil {
		b.Fatal(err)
	}
	var r *report
	for b.Loop() {
		if r, err = hop.run(b.Context(), s); err != nil {
			b.Fatal(err)
		}
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

// The scenarios of BenchmarkAggregatorHop.
const (
	hopNamespace = "aggregator-hop"
	hopObject    = "instance"
	// hopVersion is the version of the GET and of the creates (the storage version).
	hopVersion  = "v1beta1"
	hopScenario = `GET rv="0" (watch cache)`
	// hopListVersion is the version of the LISTs: the goal's non-storage version.
	hopListVersion = "v1alpha1"
	// hopPrefix starts the namespaces of the hop's creates, apart from BenchmarkAPI's.
	hopPrefix = "hop-"
)

// aggregatorHop is the targets of BenchmarkAggregatorHop, with the object created.
type aggregatorHop struct {
	env *apiEnv
	// agg, crd and dir are etcdaas through the aggregator, the CRD and etcdaas direct.
	agg, crd, dir target
	null          nullTargets
	backend       *doNothing
	// member is the backup instance's member, the stream's peer.
	member *etcdcluster.Access
}

// startAggregatorHop creates the object in etcdaas and in the CRD, starts the do-nothing
// backend with etcdaas's answer for it (protobuf or JSON, see EncodingEnv) and the backup
// instance, filled with s.backupBytes.
func (e *apiEnv) startAggregatorHop(ctx context.Context, s apiSettings) (*aggregatorHop, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: hopNamespace}}
	if _, err := e.cluster.Kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	h := &aggregatorHop{env: e, agg: e.targets[0], dir: e.targets[1], crd: e.targets[2]}
	h.agg.prefix, h.crd.prefix, h.dir.prefix = hopPrefix+h.agg.prefix, hopPrefix+h.crd.prefix, hopPrefix+h.dir.prefix
	for _, t := range []target{h.agg, h.crd} { // dir serves what agg created
		if err := t.create(ctx, hopVersion, e.object(t, hopVersion, hopNamespace, hopObject)); err != nil {
			return nil, fmt.Errorf("%s: create: %w", t.name, err)
		}
	}
	body, err := rawGET(ctx, h.agg, hopVersion, hopNamespace, hopObject)
	if err != nil {
		return nil, err
	}
	if h.backend, err = newDoNothing(h.agg.accept, body, s.backupBytes); err != nil {
		return nil, err
	}
	if h.null, err = e.startNullBackend(ctx, h.backend); err != nil {
		return nil, err
	}
	h.null.viaAggregator.prefix = hopPrefix + h.null.viaAggregator.prefix
	h.member, err = e.startBackupInstance(ctx, s)
	return h, err
}

// run measures every scenario s.repetitions times.
func (h *aggregatorHop) run(ctx context.Context, s apiSettings) (*report, error) {
	m := measurements{}
	for rep := range s.repetitions {
		for _, step := range []func(context.Context, apiSettings, int, measurements) error{h.creates, h.lists, h.gets, h.streams} {
			if err := step(ctx, s, rep, m); err != nil {
				return nil, err
			}
		}
	}
	return h.report(s, m), nil
}

// rotated is targets starting at the rep-th (modulo their number), so that none is always
// first or last.
func rotated(targets []target, rep int) []target {
	out := make([]target, 0, len(targets))
	for i := range targets {
		out = append(out, targets[(i+rep)%len(targets)])
	}
	return out
}

// versionOf is the version t serves for version: the do-nothing backend serves only its one.
func versionOf(t target, version string) string {
	if t.group == nullGroup {
		return nullVersion
	}
	return version
}

// gets measures the GET of the object from the watch cache, s.gets times per target.
func (h *aggregatorHop) gets(ctx context.Context, s apiSettings, rep int, m measurements) error {
	for _, t := range rotated([]target{h.agg, h.null.viaAggregator, h.crd, h.dir}, rep) {
		get, err := medianMillis(ctx, s.deadline, s.gets, func(ctx context.Context) error {
			return t.read(ctx, versionOf(t, hopVersion), hopNamespace, hopObject, "0")
		})
		if err != nil {
			return fmt.Errorf("%s: GET: %w", t.name, err)
		}
		m.add(hopScenario, hopVersion, t.name, get)
	}
	return nil
}

// report sets each figure next to its peer, with the goal where one applies: for the
// do-nothing backend, whether the hop alone leaves room to meet it.
func (h *aggregatorHop) report(s apiSettings, m measurements) *report {
	r := &report{Name: "aggregator-hop", Time: time.Now(), Repetitions: s.repetitions, Settings: h.settings(s)}
	add := func(scenario, version, unit, subject, peer string, g *goal) {
		r.Comparisons = append(r.Comparisons, compare(scenario, version, unit, subject, m.figure(scenario, version, subject),
			peer, m.figure(scenario, version, peer), g))
	}
	getGoal := &goal{false, 1.5}
	add(hopScenario, hopVersion, "ms", viaAggregator, nullBackend, nil)
	add(hopScenario, hopVersion, "ms", nullBackend, plainCRD, getGoal)
	add(hopScenario, hopVersion, "ms", viaAggregator, plainCRD, getGoal)
	add(hopScenario, hopVersion, "ms", direct, plainCRD, nil)
	for _, clients := range []int{1, 32} {
		var g, directGoal *goal
		if clients == 32 {
			g, directGoal = &goal{true, 1.5}, &goal{true, 2.5}
		}
		sc := createScenario(clients)
		add(sc, hopVersion, "objects/s", nullBackend, plainCRD, g)
		add(sc, hopVersion, "objects/s", viaAggregator, plainCRD, g)
		add(sc, hopVersion, "objects/s", viaAggregator, nullBackend, nil)
		add(sc, hopVersion, "objects/s", direct, plainCRD, directGoal)
	}
	for _, sc := range h.env.readScenarios() {
		listGoal := &goal{false, 0.2}
		add(sc.list, hopListVersion, "ms", nullBackend, plainCRD, listGoal)
		add(sc.list, hopListVersion, "ms", viaAggregator, plainCRD, listGoal)
		add(sc.list, hopListVersion, "ms", viaAggregator, nullBackend, nil)
		add(sc.list, hopListVersion, "ms", direct, plainCRD, nil)
	}
	streamGoal := &goal{true, 0.9}
	add(backupScenario, "", "MiB/s", nullBackend, snapshotPeer, streamGoal)
	add(backupScenario, "", "MiB/s", nullDirect, snapshotPeer, nil)
	add(backupScenario, "", "MiB/s", viaAggregator, snapshotPeer, streamGoal)
	add(backupScenario, "", "MiB/s", viaAggregator, nullBackend, nil)
	add(backupScenario, "", "MiB/s", direct, snapshotPeer, nil)
	return r
}

// settings describe the run in the report.
func (h *aggregatorHop) settings(s apiSettings) map[string]string {
	list := "not set"
	if a := h.backend.list.Load(); a != nil {
		list = fmt.Sprintf("%d bytes, sent as is (under the %d KiB above which k8s.io/apiserver gzips)", len(a.plain), gzipAbove>>10)
		if a.gzipped != nil {
			list = fmt.Sprintf("%d bytes, %d gzipped once up front and sent so to clients that accept gzip (as k8s.io/apiserver does above %d KiB)",
				len(a.plain), len(a.gzipped), gzipAbove>>10)
		}
	}
	return map[string]string{
		"GETs and LISTs per repetition (figure: their median)":         fmt.Sprintf("%d and %d", s.gets, s.lists),
		"objects per create scenario (32 clients; LIST size)":          strconv.Itoa(s.objects),
		"objects per create scenario (1 client)":                       strconv.Itoa(createCount(s, 1)),
		"versions":                                                     fmt.Sprintf("GET and create %s, LIST %s (the CRD: no conversion)", hopVersion, hopListVersion),
		"do-nothing backend: object (GET, and with 201 a create)":      fmt.Sprintf("%d bytes (%s), etcdaas's answer", len(h.backend.object), h.backend.mediaType),
		"do-nothing backend: LIST of the objects in " + hopListVersion: list + ", etcdaas's answer",
		"backup stream": fmt.Sprintf("%d MiB; the do-nothing backend writes it from memory in %d KiB writes; the peer is a clientv3 snapshot of a one-member instance run by etcdaas-controller (local backend) holding as much",
			s.backupBytes>>20, streamChunk>>10),
		"CPUs": strconv.Itoa(goruntime.NumCPU()),
	}
}

// rawGET is the body of a GET of name (of the collection when name is empty) through t, in
// t's media type; a gzipped answer is uncompressed by t's transport.
func rawGET(ctx context.Context, t target, version, namespace, name string) ([]byte, error) {
	u := fmt.Sprintf("%s/apis/%s/%s/namespaces/%s/etcdinstances", t.host, t.group, version, namespace)
	if name != "" {
		u += "/" + name
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", t.accept)
	resp, err := t.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s: %s", u, resp.Status, body)
	}
	return body, err
}
