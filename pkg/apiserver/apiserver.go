// Package apiserver assembles the etcdaas API server: the scheme, the codecs and the
// etcdaas.dev API group with both served versions, following Config -> Complete() -> New().
package apiserver

import (
	"fmt"
	"slices"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apiserver/pkg/endpoints/openapi"
	"k8s.io/apiserver/pkg/registry/generic"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/install"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1alpha1"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/backup"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
	etcdinstancestorage "github.com/etcdaas/etcdaas/pkg/registry/etcdinstance"
	"github.com/etcdaas/etcdaas/pkg/registry/event"
	"github.com/etcdaas/etcdaas/pkg/watchbuffer"
)

// ComponentName is the name of the server in logs, metrics and the effective version registry.
const ComponentName = "etcdaas-apiserver"

var (
	// Scheme holds every type the server encodes or decodes: the etcdaas.dev group in all
	// versions, autoscaling/v1 Scale for the scale subresource and the meta types.
	Scheme = runtime.NewScheme()
	// Codecs are the serializers of Scheme.
	Codecs = serializer.NewCodecFactory(Scheme)
)

// autoscalingInternal is the hub version the request machinery converts a Scale to. There is
// no internal Scale type here, so autoscaling/v1 Scale is registered as its own hub: decoding a
// Scale then needs no conversion.
var autoscalingInternal = schema.GroupVersion{Group: autoscalingv1.GroupName, Version: runtime.APIVersionInternal}

func init() {
	install.Install(Scheme)
	Scheme.AddKnownTypes(autoscalingv1.SchemeGroupVersion, &autoscalingv1.Scale{})
	Scheme.AddKnownTypes(autoscalingInternal, &autoscalingv1.Scale{})
	utilruntime.Must(event.AddToScheme(Scheme))

	// The options types (ListOptions, GetOptions, ...) are decoded as v1 query parameters.
	metav1.AddToGroupVersion(Scheme, schema.GroupVersion{Version: "v1"})
	unversioned := schema.GroupVersion{Group: "", Version: "v1"}
	Scheme.AddUnversionedTypes(unversioned,
		&metav1.Status{},
		&metav1.APIVersions{},
		&metav1.APIGroupList{},
		&metav1.APIGroup{},
		&metav1.APIResourceList{},
	)
}

// OpenAPIDefinitionNamer names OpenAPI definitions and sets their
// x-kubernetes-group-version-kind from the served types (core/v1 Event included). It reads a
// scheme like Scheme but without the autoscaling internal alias, so that Scale is advertised
// as autoscaling/v1 only.
func OpenAPIDefinitionNamer() *openapi.DefinitionNamer {
	s := runtime.NewScheme()
	install.Install(s)
	s.AddKnownTypes(autoscalingv1.SchemeGroupVersion, &autoscalingv1.Scale{})
	s.AddKnownTypes(corev1.SchemeGroupVersion, &corev1.Event{}, &corev1.EventList{})
	metav1.AddToGroupVersion(s, schema.GroupVersion{Version: "v1"})
	return openapi.NewDefinitionNamer(s)
}

// ExtraConfig is the etcdaas-specific configuration.
type ExtraConfig struct {
	// PostStartHooks run once the server serves, with a loopback client configuration
	// (the standalone mode starts its in-process controller this way).
	PostStartHooks map[string]genericapiserver.PostStartHookFunc
	// BackupDialer reaches the members of instances for the backup subresource (the
	// controller's backend provides one); nil makes every backup answer 503.
	BackupDialer etcdcluster.Dialer
	// ServeEvents serves core/v1 Events under /api/v1 (the standalone server, which has no
	// Kubernetes API next to it): the controller records its steps there and kubectl describe
	// finds them. They are left out of the OpenAPI v2 document, which describes etcdaas.dev,
	// and are in OpenAPI v3's /openapi/v3/api/v1.
	ServeEvents bool
	// WatchBufferSize is how many events each watch may fall behind the watch cache before
	// the cache's own limit (about ten events) applies; 0 leaves only the cache's limit.
	WatchBufferSize int
	// Restore configures the restore subresource: how accepted snapshots reach the
	// controller's backend, and the largest snapshot accepted.
	Restore etcdinstancestorage.RestoreOptions
	// BackupResolver reads instances' backup destinations for the backups subresource; nil
	// makes every listing answer 503.
	BackupResolver *backup.Resolver
	// Versions restricts the etcd versions instances may ask for (the standalone server's
	// local backend runs only its embedded etcd); the zero value accepts every version.
	Versions etcdinstancestorage.VersionPolicy
}

// Config is the configuration of the server: the generic server's and ours.
type Config struct {
	GenericConfig *genericapiserver.RecommendedConfig
	ExtraConfig   ExtraConfig
}

type completedConfig struct {
	GenericConfig genericapiserver.CompletedConfig
	ExtraConfig   *ExtraConfig
}

// CompletedConfig is a Config with every default filled in; only Complete makes one.
type CompletedConfig struct {
	*completedConfig
}

// Server is the etcdaas API server.
type Server struct {
	// GenericAPIServer serves the API group, discovery, OpenAPI and health endpoints.
	GenericAPIServer *genericapiserver.GenericAPIServer
}

// Complete fills in the defaults of the generic configuration, and makes requests that present
// a client certificate wait (briefly) for the client CAs to load.
func (cfg *Config) Complete() CompletedConfig {
	holdUntilClientCAsLoaded(&cfg.GenericConfig.Config)
	// The OpenAPI v2 document describes etcdaas.dev only. OpenAPI v3, which also gives every
	// served type the schema server-side apply and managedFields need, describes the
	// standalone server's Events too, under /openapi/v3/api/v1.
	if cfg.ExtraConfig.ServeEvents {
		if c := cfg.GenericConfig.OpenAPIConfig; c != nil {
			c.IgnorePrefixes = append(c.IgnorePrefixes, genericapiserver.DefaultLegacyAPIPrefix+"/")
		}
	}
	documentSubresources(&cfg.GenericConfig.Config)
	return CompletedConfig{&completedConfig{
		GenericConfig: cfg.GenericConfig.Complete(),
		ExtraConfig:   &cfg.ExtraConfig,
	}}
}

// v1beta1OnlySubresources are the storage paths of the subresources added after v1alpha1 was
// frozen: like every v1beta1-only field, they are not part of v1alpha1. It keeps the
// subresources of the original API, status, scale and backup.
var v1beta1OnlySubresources = []string{
	etcdinstancestorage.BackupsResourcePath,
	etcdinstancestorage.RestoreResourcePath,
	etcdinstancestorage.RecoverResourcePath,
	etcdinstancestorage.DefragResourcePath,
}

// New builds the server: etcdaas.dev with v1beta1 (preferred, storage) and v1alpha1.
func (c CompletedConfig) New() (*Server, error) {
	genericServer, err := c.GenericConfig.New(ComponentName, genericapiserver.NewEmptyDelegate())
	if err != nil {
		return nil, err
	}

	apiGroupInfo := genericapiserver.NewDefaultAPIGroupInfo(etcdaas.GroupName, Scheme, metav1.ParameterCodec, Codecs)
	restOptions := watchbuffer.RESTOptionsGetter(c.GenericConfig.RESTOptionsGetter, c.ExtraConfig.WatchBufferSize)
	storage, err := etcdinstancestorage.NewStorageMap(Scheme, restOptions, c.ExtraConfig.BackupDialer, c.ExtraConfig.Restore, c.ExtraConfig.Versions)
	if err != nil {
		return nil, fmt.Errorf("building etcdinstances storage: %w", err)
	}
	main, ok := storage[etcdinstancestorage.ResourcePath].(rest.Getter)
	if !ok {
		return nil, fmt.Errorf("the etcdinstances storage cannot get")
	}
	storage[etcdinstancestorage.BackupsResourcePath] = etcdinstancestorage.NewBackupsREST(main, c.ExtraConfig.BackupResolver)
	for _, gv := range []schema.GroupVersion{v1beta1.SchemeGroupVersion, v1alpha1.SchemeGroupVersion} {
		versionStorage := make(map[string]rest.Storage, len(storage))
		for path, s := range storage {
			if gv == v1alpha1.SchemeGroupVersion && slices.Contains(v1beta1OnlySubresources, path) {
				continue
			}
			versionStorage[path] = s
		}
		apiGroupInfo.VersionedResourcesStorageMap[gv.Version] = versionStorage
	}
	if err := genericServer.InstallAPIGroup(&apiGroupInfo); err != nil {
		return nil, err
	}

	if c.ExtraConfig.ServeEvents {
		if err := installEvents(genericServer, restOptions); err != nil {
			return nil, fmt.Errorf("installing events: %w", err)
		}
	}

	for name, hook := range c.ExtraConfig.PostStartHooks {
		if err := genericServer.AddPostStartHook(name, hook); err != nil {
			return nil, err
		}
	}
	return &Server{GenericAPIServer: genericServer}, nil
}

// installEvents serves core/v1 Events under /api/v1, stored as v1 JSON.
func installEvents(s *genericapiserver.GenericAPIServer, getter generic.RESTOptionsGetter) error {
	store, err := event.NewREST(Scheme, coreV1Storage{getter})
	if err != nil {
		return err
	}
	info := genericapiserver.NewDefaultAPIGroupInfo(corev1.GroupName, Scheme, metav1.ParameterCodec, Codecs)
	info.VersionedResourcesStorageMap[corev1.SchemeGroupVersion.Version] = map[string]rest.Storage{event.ResourcePath: store}
	return s.InstallLegacyAPIGroup(genericapiserver.DefaultLegacyAPIPrefix, &info)
}

// coreV1Storage stores core/v1 objects as v1 JSON; the configured storage codec encodes only
// the etcdaas.dev group.
type coreV1Storage struct {
	generic.RESTOptionsGetter
}

// GetRESTOptions implements generic.RESTOptionsGetter.
func (g coreV1Storage) GetRESTOptions(resource schema.GroupResource, example runtime.Object) (generic.RESTOptions, error) {
	opts, err := g.RESTOptionsGetter.GetRESTOptions(resource, example)
	if err != nil {
		return opts, err
	}
	cfg := *opts.StorageConfig
	cfg.Codec = Codecs.LegacyCodec(corev1.SchemeGroupVersion)
	cfg.EncodeVersioner = corev1.SchemeGroupVersion
	opts.StorageConfig = &cfg
	return opts, nil
}
