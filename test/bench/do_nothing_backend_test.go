package bench

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"

	"github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned/scheme"
	"github.com/etcdaas/etcdaas/pkg/pki"
	"github.com/etcdaas/etcdaas/test/e2e/framework"
)

// The do-nothing aggregated backend of BenchmarkAggregatorHop.
const (
	nullGroup   = "null.bench.etcdaas.dev"
	nullVersion = "v1"
	nullService = "null-apiserver"
	nullBackend = "do-nothing backend via kube-apiserver"
	nullDirect  = "do-nothing backend direct"
	// gzipAbove is the size above which k8s.io/apiserver gzips an answer for a client that
	// accepts gzip (responsewriters' defaultGzipThresholdBytes).
	gzipAbove = 128 << 10
	// streamChunk is the size of each write of the do-nothing backend's backup stream.
	streamChunk = 64 << 10
)

// doNothing answers as etcdaas-apiserver would, from bytes fixed up front: it authenticates,
// authorizes, decodes and encodes nothing, so a request costs it nothing but the I/O.
type doNothing struct {
	// mediaType is the Content-Type of object and of the list.
	mediaType string
	// object answers a GET of any object and, with 201, a create (whose body is discarded).
	object []byte
	// list answers a GET of any collection; nil until set (the objects must exist first).
	list atomic.Pointer[listAnswer]
	// streamBytes is the length of the answer to GET .../etcdinstances/NAME/backup.
	streamBytes int64
	discovery   []byte
}

// listAnswer is a LIST's bytes, and the same gzipped once when k8s.io/apiserver would gzip
// them (nil otherwise).
type listAnswer struct{ plain, gzipped []byte }

// newDoNothing answers object (in mediaType) to GETs and creates, and streams streamBytes.
func newDoNothing(mediaType string, object []byte, streamBytes int64) (*doNothing, error) {
	discovery, err := json.Marshal(metav1.APIResourceList{
		TypeMeta:     metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"},
		GroupVersion: nullGroup + "/" + nullVersion,
		APIResources: []metav1.APIResource{
			{Name: "etcdinstances", SingularName: "etcdinstance", Namespaced: true, Kind: "ETCDInstance", Verbs: []string{"create", "get", "list"}},
			{Name: "etcdinstances/backup", Namespaced: true, Kind: "ETCDInstance", Verbs: []string{"get"}},
		},
	})
	return &doNothing{mediaType: mediaType, object: object, streamBytes: streamBytes, discovery: discovery}, err
}

// setList makes list the answer to every LIST, gzipped once now if it is over gzipAbove.
func (d *doNothing) setList(list []byte) error {
	a := &listAnswer{plain: list}
	if len(list) > gzipAbove {
		var buf bytes.Buffer
		zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed) // k8s.io/apiserver's level
		if err != nil {
			return err
		}
		if _, err := zw.Write(list); err != nil {
			return err
		}
		if err := zw.Close(); err != nil {
			return err
		}
		a.gzipped = buf.Bytes()
	}
	d.list.Store(a)
	return nil
}

func (d *doNothing) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path, ok := strings.CutPrefix(r.URL.Path, "/apis/"+nullGroup+"/"+nullVersion)
	switch {
	case !ok:
		http.NotFound(w, r)
	case path == "":
		w.Header().Set("Content-Type", runtime.ContentTypeJSON)
		_, _ = w.Write(d.discovery)
	case r.Method == http.MethodPost && strings.HasSuffix(path, "/etcdinstances"):
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", d.mediaType)
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(d.object)
	case r.Method != http.MethodGet:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	case strings.HasSuffix(path, "/backup"):
		d.stream(w)
	case strings.HasSuffix(path, "/etcdinstances"):
		d.serveList(w, r)
	default:
		w.Header().Set("Content-Type", d.mediaType)
		_, _ = w.Write(d.object)
	}
}

// serveList answers the list, gzipped when the client accepts gzip and it was gzipped.
func (d *doNothing) serveList(w http.ResponseWriter, r *http.Request) {
	a := d.list.Load()
	if a == nil {
		http.Error(w, "no list yet", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", d.mediaType)
	if a.gzipped != nil && acceptsGzip(r) {
		w.Header().Set("Content-Encoding", "gzip")
		_, _ = w.Write(a.gzipped)
		return
	}
	_, _ = w.Write(a.plain)
}

// acceptsGzip reports whether the request's Accept-Encoding lists gzip.
func acceptsGzip(r *http.Request) bool {
	for _, coding := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		if name, _, _ := strings.Cut(coding, ";"); strings.TrimSpace(name) == "gzip" {
			return true
		}
	}
	return false
}

// stream writes streamBytes from one buffer in memory, streamChunk at a time.
func (d *doNothing) stream(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/octet-stream")
	chunk := make([]byte, streamChunk)
	for left := d.streamBytes; left > 0; left -= int64(len(chunk)) {
		if left < int64(len(chunk)) {
			chunk = chunk[:left]
		}
		if _, err := w.Write(chunk); err != nil {
			return
		}
	}
}

// nullTargets are the do-nothing backend through kube-apiserver and direct.
type nullTargets struct{ viaAggregator, direct target }

// startNullBackend serves d over HTTP/2 and TLS on loopback, registers it as the APIService
// v1.null.bench.etcdaas.dev behind an ExternalName Service (as etcdaas is in the harness) and
// returns it reached through kube-apiserver, once the aggregator serves it, and directly.
// Its targets create as etcdaas's do (see nullPoster).
func (e *apiEnv) startNullBackend(ctx context.Context, d *doNothing) (nullTargets, error) {
	c := e.cluster
	serverName := nullService + "." + framework.Namespace + ".svc"
	kp, err := c.PKI.ServingCA.Issue(pki.Request{CommonName: nullService, DNSNames: []string{serverName}, Usage: pki.ServerUsage})
	if err != nil {
		return nullTargets{}, err
	}
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		return nullTargets{}, err
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nullTargets{}, err
	}
	srv := &http.Server{
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		Handler:           d,
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	context.AfterFunc(ctx, func() { _ = srv.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	if err := registerNull(ctx, c, port); err != nil {
		return nullTargets{}, err
	}
	directConfig := rest.CopyConfig(c.AdminConfig)
	directConfig.Host = "https://" + framework.HostPort(port)
	directConfig.CAData, directConfig.CAFile, directConfig.ServerName = c.PKI.ServingCA.CertPEM, "", serverName
	var nt nullTargets
	if nt.viaAggregator, err = newNullTarget(nullBackend, "null", c.AdminConfig, e.protobuf); err != nil {
		return nt, err
	}
	if nt.direct, err = newNullTarget(nullDirect, "nulldir", directConfig, e.protobuf); err != nil {
		return nt, err
	}
	err = framework.Poll(ctx, 200*time.Millisecond, time.Minute, "the do-nothing backend served through kube-apiserver", func(ctx context.Context) (bool, error) {
		got, err := rawGET(ctx, nt.viaAggregator, nullVersion, "any", "any")
		return err == nil && bytes.Equal(got, d.object), nil
	})
	return nt, err
}

// registerNull creates the ExternalName Service and the APIService of the do-nothing backend
// listening on port.
func registerNull(ctx context.Context, c *framework.Cluster, port int) error {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: nullService, Namespace: framework.Namespace},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "localhost",
			Ports: []corev1.ServicePort{{Port: int32(port)}}},
	}
	if _, err := c.Kube.CoreV1().Services(framework.Namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return err
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
		return fmt.Errorf("creating APIService %s: %w", apiService.GetName(), err)
	}
	return nil
}

// newNullTarget is a target of the do-nothing backend reached with config: its reads are
// those of every target (in protobuf or JSON as etcdaas's), its creates go through a REST
// client of the null group built as the generated clientset builds its own (nullPoster).
func newNullTarget(name, prefix string, config *rest.Config, protobuf bool) (target, error) {
	t, err := newTarget(name, prefix, nullGroup, config, protobuf)
	if err != nil {
		return t, err
	}
	cfg := rest.CopyConfig(t.config)
	cfg.GroupVersion = &schema.GroupVersion{Group: nullGroup, Version: nullVersion}
	cfg.APIPath = "/apis"
	cfg.NegotiatedSerializer = rest.CodecFactoryForGeneratedClient(scheme.Scheme, scheme.Codecs).WithoutConversion()
	client, err := rest.RESTClientForConfigAndClient(cfg, t.http)
	if err != nil {
		return t, err
	}
	t.post = &nullPoster{client: client, protobuf: protobuf}
	return t, nil
}

// nullPoster creates in the do-nothing backend with the request etcdaas's client sends for
// the same object: typed objects as the generated clientset sends them (protobuf body and
// Accept, the answer decoded into a new object), unstructured ones as JSON.
type nullPoster struct {
	client   *rest.RESTClient
	protobuf bool
}

func (p nullPoster) create(ctx context.Context, namespace string, obj runtime.Object) error {
	gvk := obj.GetObjectKind().GroupVersionKind()
	var into runtime.Object = &unstructured.Unstructured{}
	if _, ok := obj.(*unstructured.Unstructured); !ok {
		var err error
		if into, err = scheme.Scheme.New(gvk); err != nil {
			return fmt.Errorf("%v: %w", gvk, err)
		}
	}
	req := p.client.Post()
	if p.protobuf {
		req = req.UseProtobufAsDefault()
	}
	// The options as the clientset encodes them, for etcdaas's version: the null group has none.
	return req.Namespace(namespace).Resource("etcdinstances").
		SpecificallyVersionedParams(&metav1.CreateOptions{}, scheme.ParameterCodec, gvk.GroupVersion()).Body(obj).Do(ctx).Into(into)
}
