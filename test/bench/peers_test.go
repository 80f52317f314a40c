package bench

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1alpha1"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/conversion"
	versioned "github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned"
	"github.com/etcdaas/etcdaas/test/e2e/framework"
)

// The groups of the two CRD peers: the same kind, versions and objects as etcdaas.dev.
const (
	plainCRDGroup   = "plain.bench.etcdaas.dev"
	webhookCRDGroup = "webhook.bench.etcdaas.dev"
)

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// peerCRD is a CRD serving ETCDInstances in group with the versions of etcdaas.dev
// (v1beta1 stored), a status subresource and a schema that keeps spec and status as sent.
// With webhook set, objects are converted between versions by that webhook; otherwise the
// CRD has no conversion (strategy None: only apiVersion changes).
func peerCRD(group string, webhook *apiextensionsv1.WebhookClientConfig) *apiextensionsv1.CustomResourceDefinition {
	preserve := true
	validation := &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
		Type: "object",
		Properties: map[string]apiextensionsv1.JSONSchemaProps{
			"spec":   {Type: "object", XPreserveUnknownFields: &preserve},
			"status": {Type: "object", XPreserveUnknownFields: &preserve},
		},
	}}
	version := func(name string, storage bool) apiextensionsv1.CustomResourceDefinitionVersion {
		return apiextensionsv1.CustomResourceDefinitionVersion{Name: name, Served: true, Storage: storage, Schema: validation,
			Subresources: &apiextensionsv1.CustomResourceSubresources{Status: &apiextensionsv1.CustomResourceSubresourceStatus{}}}
	}
	crd := &apiextensionsv1.CustomResourceDefinition{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apiextensions.k8s.io/v1", Kind: "CustomResourceDefinition"},
		ObjectMeta: metav1.ObjectMeta{Name: "etcdinstances." + group},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: group,
			Scope: apiextensionsv1.NamespaceScoped,
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "etcdinstances", Singular: "etcdinstance",
				Kind: "ETCDInstance", ListKind: "ETCDInstanceList"},
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{version("v1beta1", true), version("v1alpha1", false)},
		},
	}
	if webhook != nil {
		crd.Spec.Conversion = &apiextensionsv1.CustomResourceConversion{
			Strategy: apiextensionsv1.WebhookConverter,
			Webhook:  &apiextensionsv1.WebhookConversion{ClientConfig: webhook, ConversionReviewVersions: []string{"v1"}},
		}
	}
	return crd
}

// startConversionWebhook serves conversion.Webhook for webhookCRDGroup on loopback with
// etcdaas-apiserver's serving certificate and returns how kube-apiserver reaches it.
func startConversionWebhook(ctx context.Context, c *framework.Cluster) (*apiextensionsv1.WebhookClientConfig, func(), error) {
	cert, err := tls.LoadX509KeyPair(c.PKI.Path("etcdaas-apiserver.crt"), c.PKI.Path("etcdaas-apiserver.key"))
	if err != nil {
		return nil, nil, err
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	srv := &http.Server{
		Handler:           conversion.NewWebhook(webhookCRDGroup),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	hook := "https://" + ln.Addr().String() + "/convert"
	return &apiextensionsv1.WebhookClientConfig{URL: &hook, CABundle: c.PKI.ServingCA.CertPEM}, func() { _ = srv.Close() }, nil
}

// createCRD creates crd and waits until both of its versions are served.
func createCRD(ctx context.Context, c *framework.Cluster, crd *apiextensionsv1.CustomResourceDefinition) error {
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(crd)
	if err != nil {
		return err
	}
	if _, err := c.Dynamic.Resource(crdGVR).Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating CRD %s: %w", crd.Name, err)
	}
	return framework.Poll(ctx, 200*time.Millisecond, time.Minute, "CRD "+crd.Name+" served", func(ctx context.Context) (bool, error) {
		for _, v := range crd.Spec.Versions {
			gvr := schema.GroupVersionResource{Group: crd.Spec.Group, Version: v.Name, Resource: crd.Spec.Names.Plural}
			if _, err := c.Dynamic.Resource(gvr).List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
				return false, nil //nolint:nilerr // not served yet: poll again
			}
		}
		return true, nil
	})
}

// target is one server that stores ETCDInstances, reached through one client.
type target struct {
	// name is how the report names it.
	name string
	// prefix starts the names of its namespaces.
	prefix string
	group  string
	client dynamic.Interface
	// typed, when set, creates the target's objects instead of client: the generated
	// clientset, which sends and asks for protobuf as client-go's clients of built-in types do
	// (etcdaas; a CRD cannot serve protobuf).
	typed *versioned.Clientset
	// accept is the media type the timed reads ask for.
	accept string
	// host and http read raw responses: the timed reads leave out client-side decoding,
	// which is the same for every target and would hide the servers' differences.
	host string
	http *http.Client
	// config is what client and http were made from (unthrottled).
	config *rest.Config
	// post, when set, takes every create (the do-nothing backend's group, see nullPoster).
	post *nullPoster
}

// newTarget makes a target reached with config, unthrottled: its concurrent requests
// share one HTTP/2 connection. With protobuf, it creates through the generated clientset
// and reads protobuf; otherwise it creates through the dynamic client and reads JSON.
func newTarget(name, prefix, group string, config *rest.Config, protobuf bool) (target, error) {
	config = rest.CopyConfig(config)
	config.QPS, config.Burst = -1, 0
	t := target{name: name, prefix: prefix, group: group, host: config.Host, config: config, accept: runtime.ContentTypeJSON}
	var err error
	if t.http, err = rest.HTTPClientFor(config); err != nil {
		return t, err
	}
	if protobuf {
		t.accept = runtime.ContentTypeProtobuf
		if t.typed, err = versioned.NewForConfigAndClient(config, t.http); err != nil {
			return t, err
		}
	}
	t.client, err = dynamic.NewForConfigAndClient(config, t.http)
	return t, err
}

// create creates obj, an unstructured ETCDInstance through the dynamic client or a typed one
// through the generated clientset.
func (t target) create(ctx context.Context, version string, obj runtime.Object) error {
	if t.post != nil {
		m, err := apimeta.Accessor(obj)
		if err != nil {
			return err
		}
		return t.post.create(ctx, m.GetNamespace(), obj)
	}
	var err error
	switch o := obj.(type) {
	case *unstructured.Unstructured:
		_, err = t.resource(version).Namespace(o.GetNamespace()).Create(ctx, o, metav1.CreateOptions{})
	case *v1beta1.ETCDInstance:
		_, err = t.typed.EtcdaasV1beta1().ETCDInstances(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	case *v1alpha1.ETCDInstance:
		_, err = t.typed.EtcdaasV1alpha1().ETCDInstances(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	default:
		err = fmt.Errorf("cannot create a %T", obj)
	}
	return err
}

func (t target) resource(version string) dynamic.NamespaceableResourceInterface {
	return t.client.Resource(schema.GroupVersionResource{Group: t.group, Version: version, Resource: "etcdinstances"})
}

// read GETs the object name (or the list of the namespace when name is empty) in version at
// resourceVersion rv in the target's media type and reads the whole response without
// decoding it.
func (t target) read(ctx context.Context, version, namespace, name, rv string) error {
	u := fmt.Sprintf("%s/apis/%s/%s/namespaces/%s/etcdinstances", t.host, t.group, version, namespace)
	if name != "" {
		u += "/" + name
	}
	if rv != "" {
		u += "?resourceVersion=" + url.QueryEscape(rv)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", t.accept)
	resp, err := t.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, body)
	}
	if got := resp.Header.Get("Content-Type"); got != t.accept {
		return fmt.Errorf("GET %s: answered in %s, asked for %s", u, got, t.accept)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}
