package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/etcdaas/etcdaas/pkg/pki"
	"github.com/etcdaas/etcdaas/test/e2e/framework"
)

// The do-nothing aggregated backend of BenchmarkAggregatorHop.
const (
	nullGroup   = "null.bench.etcdaas.dev"
	nullVersion = "v1"
	nullService = "null-apiserver"
	nullBackend = "do-nothing backend via kube-apiserver"
)

// BenchmarkAggregatorHop measures what kube-apiserver's aggregator adds to a GET before the
// backend does any work. Next to etcdaas-apiserver through the aggregator and the CRD, it
// registers a second APIService whose backend, an HTTP/2 server on loopback, answers every GET
// with the bytes of the object etcdaas serves (protobuf; JSON with ETCDAAS_BENCH_ENCODING=json)
// without authenticating, authorizing or encoding anything. Each repetition takes the median
// of the GETs of one object from the watch cache (resourceVersion "0") of each target in turn.
// It writes _output/bench/aggregator-hop.{md,json}.
func BenchmarkAggregatorHop(b *testing.B) {
	s := apiSettingsFromEnv(b)
	env := startAPIEnv(b, true)
	hop, err := env.startAggregatorHop(b.Context())
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

// The object every target of BenchmarkAggregatorHop GETs.
const (
	hopNamespace = "aggregator-hop"
	hopObject    = "instance"
	hopVersion   = "v1beta1"
	hopScenario  = `GET rv="0" (watch cache)`
)

// aggregatorHop is the targets of BenchmarkAggregatorHop, with the object created.
type aggregatorHop struct {
	// targets are etcdaas through the aggregator, the do-nothing backend, the CRD and etcdaas
	// direct, each with the version it GETs.
	targets  []target
	versions map[string]string
	// size is the length of the object as etcdaas answers it (protobuf or JSON).
	size int
}

// startAggregatorHop creates the object in etcdaas and in the CRD and starts the do-nothing
// backend with etcdaas's answer for it (protobuf or JSON, see EncodingEnv).
func (e *apiEnv) startAggregatorHop(ctx context.Context) (*aggregatorHop, error) {
	const namespace, name, version = hopNamespace, hopObject, hopVersion
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	if _, err := e.cluster.Kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	agg, dir, crd := e.targets[0], e.targets[1], e.targets[2]
	for _, t := range []target{agg, crd} { // dir serves what agg created
		if err := t.create(ctx, version, e.object(t, version, namespace, name)); err != nil {
			return nil, fmt.Errorf("%s: create: %w", t.name, err)
		}
	}
	body, err := rawGET(ctx, agg, version, namespace, name)
	if err != nil {
		return nil, err
	}
	null, err := e.startNullBackend(ctx, body, agg.accept)
	if err != nil {
		return nil, err
	}
	return &aggregatorHop{
		targets:  []target{agg, null, crd, dir},
		versions: map[string]string{agg.name: version, null.name: nullVersion, crd.name: version, dir.name: version},
		size:     len(body),
	}, nil
}

// run measures every target s.repetitions times, in a rotating order.
func (h *aggregatorHop) run(ctx context.Context, s apiSettings) (*report, error) {
	m := measurements{}
	for rep := range s.repetitions {
		for i := range h.targets {
			t := h.targets[(i+rep)%len(h.targets)]
			get, err := medianMillis(ctx, s.deadline, s.gets, func(ctx context.Context) error {
				return t.read(ctx, h.versions[t.name], hopNamespace, hopObject, "0")
			})
			if err != nil {
				return nil, fmt.Errorf("%s: GET: %w", t.name, err)
			}
			m.add(hopScenario, hopVersion, t.name, get)
		}
	}
	r := &report{Name: "aggregator-hop", Time: time.Now(), Repetitions: s.repetitions, Settings: map[string]string{
		"GETs per repetition (figure: their median)": strconv.Itoa(s.gets),
		"response": fmt.Sprintf("%d bytes (%s)", h.size, h.targets[0].accept),
	}}
	for _, c := range [][2]string{{viaAggregator, nullBackend}, {nullBackend, plainCRD}, {viaAggregator, plainCRD}, {direct, plainCRD}} {
		r.Comparisons = append(r.Comparisons, compare(hopScenario, hopVersion, "ms", c[0], m.figure(hopScenario, hopVersion, c[0]),
			c[1], m.figure(hopScenario, hopVersion, c[1]), nil))
	}
	return r, nil
}

// rawGET is the body of a GET of name through t, in t's media type.
func rawGET(ctx context.Context, t target, version, namespace, name string) ([]byte, error) {
	u := fmt.Sprintf("%s/apis/%s/%s/namespaces/%s/etcdinstances/%s", t.host, t.group, version, namespace, name)
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

// startNullBackend serves body in mediaType (as etcdaas answered it) for every GET on
// loopback, registers it as the APIService v1.null.bench.etcdaas.dev behind an ExternalName
// Service (as etcdaas is in the harness) and returns it as a target reached through
// kube-apiserver once the aggregator serves it.
func (e *apiEnv) startNullBackend(ctx context.Context, body []byte, mediaType string) (target, error) {
	c := e.cluster
	kp, err := c.PKI.ServingCA.Issue(pki.Request{
		CommonName: nullService, DNSNames: []string{nullService + "." + framework.Namespace + ".svc"}, Usage: pki.ServerUsage})
	if err != nil {
		return target{}, err
	}
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		return target{}, err
	}
	discovery, err := json.Marshal(metav1.APIResourceList{
		TypeMeta:     metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"},
		GroupVersion: nullGroup + "/" + nullVersion,
		APIResources: []metav1.APIResource{{Name: "etcdinstances", SingularName: "etcdinstance", Namespaced: true, Kind: "ETCDInstance", Verbs: []string{"get"}}},
	})
	if err != nil {
		return target{}, err
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return target{}, err
	}
	srv := &http.Server{
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/apis/"+nullGroup+"/"+nullVersion {
				w.Header().Set("Content-Type", runtime.ContentTypeJSON)
				_, _ = w.Write(discovery)
				return
			}
			w.Header().Set("Content-Type", mediaType)
			_, _ = io.Copy(w, bytes.NewReader(body))
		}),
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	context.AfterFunc(ctx, func() { _ = srv.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: nullService, Namespace: framework.Namespace},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "localhost",
			Ports: []corev1.ServicePort{{Port: int32(port)}}},
	}
	if _, err := c.Kube.CoreV1().Services(framework.Namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return target{}, err
	}
	apiService := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
		"metadata": map[string]any{"name": nullVersion + "." + nullGroup},
		"spec": map[string]any{
			"group": nullGroup, "version": nullVersion, "groupPriorityMinimum": int64(1000), "versionPriority": int64(10),
			"service":  map[string]any{"name": nullService, "namespace": framework.Namespace, "port": int64(port)},
			"caBundle": base64.StdEncoding.EncodeToString(c.PKI.ServingCA.CertPEM),
		},
	}}
	if _, err := c.Dynamic.Resource(framework.APIServiceGVR).Create(ctx, apiService, metav1.CreateOptions{}); err != nil {
		return target{}, fmt.Errorf("creating APIService %s: %w", apiService.GetName(), err)
	}
	t, err := newTarget(nullBackend, "null", nullGroup, c.AdminConfig, mediaType == runtime.ContentTypeProtobuf)
	if err != nil {
		return target{}, err
	}
	err = framework.Poll(ctx, 200*time.Millisecond, time.Minute, "the do-nothing backend served through kube-apiserver", func(ctx context.Context) (bool, error) {
		got, err := rawGET(ctx, t, nullVersion, "any", "any")
		return err == nil && bytes.Equal(got, body), nil
	})
	return t, err
}
