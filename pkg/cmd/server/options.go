// Package server holds the options and the start-up of etcdaas-apiserver, in both serving
// modes: aggregated (behind kube-apiserver, delegated authentication and authorization, an
// etcd cluster of its own) and standalone (one process with embedded etcd and its own PKI).
package server

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/sets"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericfilters "k8s.io/apiserver/pkg/server/filters"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	serverstorage "k8s.io/apiserver/pkg/server/storage"
	"k8s.io/client-go/kubernetes"
	netutils "k8s.io/utils/net"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/apiserver"
	"github.com/etcdaas/etcdaas/pkg/backup"
	kubebackend "github.com/etcdaas/etcdaas/pkg/controller/backend/kubernetes"
	"github.com/etcdaas/etcdaas/pkg/controller/backend/local"
	etcdaasopenapi "github.com/etcdaas/etcdaas/pkg/openapi"
	"github.com/etcdaas/etcdaas/pkg/watchbuffer"
)

// DefaultEtcdPathPrefix is the prefix of every key the server writes to etcd.
const DefaultEtcdPathPrefix = "/registry/etcdaas.dev"

// DefaultSecurePort is the port the server listens on unless --secure-port says otherwise.
const DefaultSecurePort = 6443

// DefaultShutdownWatchTerminationGracePeriod is how long a stopping server lets open watches
// drain before it closes them.
const DefaultShutdownWatchTerminationGracePeriod = 2 * time.Second

// Options are the command-line options of etcdaas-apiserver.
type Options struct {
	// RecommendedOptions are the generic API server options: etcd, secure serving, delegated
	// authentication and authorization, audit, admission, features.
	RecommendedOptions *genericoptions.RecommendedOptions
	// ServerRun are the generic request and shutdown options (timeouts, in-flight limits,
	// shutdown delays, the watch termination grace period).
	ServerRun *genericoptions.ServerRunOptions
	// Standalone selects the standalone mode: embedded etcd, own PKI, loopback only.
	Standalone StandaloneOptions
	// AlternateDNS are extra names for the self-signed serving certificate of the aggregated
	// mode (used only when no certificate is given).
	AlternateDNS []string
	// BackupLocalDataDir, when set, serves backups from the members of an
	// `etcdaas-controller --backend=local --data-dir DIR` on this machine instead of the
	// kubernetes backend's StatefulSets (aggregated mode).
	BackupLocalDataDir string
	// WatchBufferSize is how many events each watch may fall behind before the watch cache
	// closes it as unresponsive (--watch-buffer-size).
	WatchBufferSize int
	// MaxRestoreSize is the largest snapshot the restore subresource accepts, as a quantity
	// such as "8Gi"; larger ones are refused with 413.
	MaxRestoreSize string
	// BackupDir is the directory of local backup destinations (<dir>/<namespace>/<name>/) the
	// backups subresource lists, the controller's --backup-dir (aggregated mode). Empty with
	// BackupLocalDataDir set means BackupLocalDataDir/backups, as the controller defaults.
	BackupDir string

	// bindAddressSet records that --bind-address was given explicitly.
	bindAddressSet bool
	// replacedFlagsSet are the flags given that standalone mode would ignore (replacedFlagsSet).
	replacedFlagsSet []string
	// aggregatedFlagsSet are the flags given of the aggregated mode only (aggregatedFlagsSet).
	aggregatedFlagsSet []string
	// standaloneFlagsSet are the flags given of the standalone mode only (standaloneFlagsSet).
	standaloneFlagsSet []string
}

// NewOptions returns the default options.
func NewOptions() *Options {
	o := &Options{
		RecommendedOptions: genericoptions.NewRecommendedOptions(
			DefaultEtcdPathPrefix,
			apiserver.Codecs.LegacyCodec(v1beta1.SchemeGroupVersion),
		),
		ServerRun:      genericoptions.NewServerRunOptions(),
		MaxRestoreSize: "8Gi",
		Standalone: StandaloneOptions{
			EtcdClientPort: DefaultStandaloneEtcdClientPort,
			EtcdPeerPort:   DefaultStandaloneEtcdPeerPort,
		},
		WatchBufferSize: watchbuffer.DefaultSize,
	}
	o.RecommendedOptions.SecureServing.BindPort = DefaultSecurePort
	addResourceQuotaAdmission(o.RecommendedOptions)
	// Open watches (kubectl get -w, informers, the garbage collector's) would otherwise hold a
	// SIGTERM for the whole request timeout.
	o.ServerRun.ShutdownWatchTerminationGracePeriod = DefaultShutdownWatchTerminationGracePeriod
	// Objects are stored as v1beta1 protobuf, as kube-apiserver stores built-in types. Objects
	// stored as JSON (before protobuf, or with --storage-media-type=application/json) are still
	// read: the storage decoder recognizes either encoding (applyStorageMediaType).
	o.RecommendedOptions.Etcd.DefaultStorageMediaType = runtime.ContentTypeProtobuf
	return o
}

// AddFlags registers the options' flags.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	o.RecommendedOptions.AddFlags(fs)
	o.ServerRun.AddUniversalFlags(fs)
	o.Standalone.AddFlags(fs)
	fs.StringSliceVar(&o.AlternateDNS, "alternate-dns", o.AlternateDNS,
		"Extra DNS names for the self-signed serving certificate generated when none is given (aggregated mode).")
	fs.StringVar(&o.BackupDir, "backup-dir", o.BackupDir,
		"Directory of the local backup destinations (DIR/<namespace>/<name>/) that etcdinstances/backups lists: the controller's --backup-dir "+
			"(aggregated mode; default with --backup-local-data-dir: that directory's backups/). Standalone mode: where its in-process "+
			"controller writes them too (default --data-dir's backups/).")
	fs.StringVar(&o.BackupLocalDataDir, "backup-local-data-dir", o.BackupLocalDataDir,
		"Serve etcdinstances/backup from the members of an etcdaas-controller running --backend=local with this --data-dir "+
			"on the same machine, instead of the kubernetes backend's StatefulSets (aggregated mode); restores are then handed to that controller "+
			"through the same directory.")
	fs.IntVar(&o.WatchBufferSize, "watch-buffer-size", o.WatchBufferSize,
		"Events each watch may fall behind before the watch cache closes it as unresponsive. The watch cache alone "+
			"allows about ten, so a burst of writes closes watches whose HTTP/2 stream stalls for a moment and their "+
			"clients re-list all at once. 0 keeps only the watch cache's limit.")
	fs.StringVar(&o.MaxRestoreSize, "max-restore-size", o.MaxRestoreSize,
		"The largest etcd snapshot etcdinstances/restore accepts (a quantity such as 8Gi); larger uploads are refused with 413 before they reach the disk.")
}

// maxRestoreBytes parses --max-restore-size.
func (o *Options) maxRestoreBytes() (int64, error) {
	q, err := resource.ParseQuantity(o.MaxRestoreSize)
	if err != nil || q.Sign() <= 0 {
		return 0, fmt.Errorf("--max-restore-size %q is not a positive quantity such as 8Gi", o.MaxRestoreSize)
	}
	return q.Value(), nil
}

// Complete fills in what the flags leave open.
func (o *Options) Complete(fs *pflag.FlagSet) error {
	if fs != nil {
		if f := fs.Lookup("bind-address"); f != nil && f.Changed {
			o.bindAddressSet = true
		}
	}
	// Applies --feature-gates and --emulated-version.
	if err := o.ServerRun.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	if o.Standalone.Enabled {
		o.replacedFlagsSet = replacedFlagsSet(fs)
		o.aggregatedFlagsSet = aggregatedFlagsSet(fs)
		return o.completeStandalone()
	}
	o.standaloneFlagsSet = standaloneFlagsSet(fs)
	return nil
}

// Validate reports every invalid option.
func (o *Options) Validate() error {
	var errs []error
	if _, err := o.maxRestoreBytes(); err != nil {
		errs = append(errs, err)
	}
	if o.Standalone.Enabled {
		errs = append(errs, o.validateStandalone()...)
	} else {
		errs = append(errs, o.RecommendedOptions.Validate()...)
		errs = append(errs, o.ServerRun.Validate()...)
		errs = append(errs, o.validateWatchBuffer()...)
		errs = append(errs, o.validateAggregatedFlags()...)
	}
	return utilerrors.NewAggregate(errs)
}

// validateWatchBuffer checks --watch-buffer-size (both modes).
func (o *Options) validateWatchBuffer() []error {
	if o.WatchBufferSize < 0 {
		return []error{fmt.Errorf("--watch-buffer-size %d must not be negative (0 keeps only the watch cache's limit)", o.WatchBufferSize)}
	}
	return nil
}

// genericConfig returns the generic configuration common to both modes, before the
// recommended options are applied: request and shutdown options, OpenAPI v2 and v3,
// effective version, feature gate.
func (o *Options) genericConfig() (*genericapiserver.RecommendedConfig, error) {
	c := genericapiserver.NewRecommendedConfig(apiserver.Codecs)
	if err := o.ServerRun.ApplyTo(&c.Config); err != nil {
		return nil, err
	}
	if err := o.applyStorageMediaType(); err != nil {
		return nil, err
	}

	namer := apiserver.OpenAPIDefinitionNamer()
	c.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(etcdaasopenapi.GetOpenAPIDefinitionsWithEvents, namer)
	c.OpenAPIConfig.Info.Title = "etcdaas"
	c.OpenAPIConfig.Info.Version = "v1beta1"
	c.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(etcdaasopenapi.GetOpenAPIDefinitionsWithEvents, namer)
	c.OpenAPIV3Config.Info.Title = "etcdaas"
	c.OpenAPIV3Config.Info.Version = "v1beta1"

	// A backup or a restore streams a whole snapshot: it must not be cut by the request timeout.
	c.LongRunningFunc = genericfilters.BasicLongRunningRequestCheck(sets.NewString("watch"), sets.NewString("backup", "restore"))

	// ServerRun set the effective version and feature gate from --emulated-version and
	// --feature-gates; /version reports it with a gitVersion kubectl can parse.
	c.EffectiveVersion = apiserver.EffectiveVersion(c.EffectiveVersion)
	return c, nil
}

// applyStorageMediaType makes the storage codec write objects as --storage-media-type (v1beta1
// protobuf by default). It reads every encoding the server serves, so objects written with
// another media type (JSON, before protobuf) stay readable; they are rewritten in the new one
// on their next update.
func (o *Options) applyStorageMediaType() error {
	etcd := o.RecommendedOptions.Etcd
	if etcd == nil { // no storage configured (as the generic options allow)
		return nil
	}
	// The codec and the versioner that names v1beta1 as what is stored, as k8s.io/apiserver's
	// storage factory sets them.
	codec, versioner, err := serverstorage.NewStorageCodec(serverstorage.StorageCodecConfig{
		StorageMediaType:  etcd.DefaultStorageMediaType,
		StorageSerializer: apiserver.Codecs,
		StorageVersion:    v1beta1.SchemeGroupVersion,
		MemoryVersion:     etcdaas.SchemeGroupVersion,
		Config:            etcd.StorageConfig,
	})
	if err != nil {
		return fmt.Errorf("--storage-media-type: %w", err)
	}
	etcd.StorageConfig.Codec, etcd.StorageConfig.EncodeVersioner = codec, versioner
	return nil
}

// Config returns the server configuration of the aggregated mode.
func (o *Options) Config() (*apiserver.Config, error) {
	if err := o.RecommendedOptions.SecureServing.MaybeDefaultWithSelfSignedCerts(
		"localhost", o.AlternateDNS, []net.IP{netutils.ParseIPSloppy("127.0.0.1")}); err != nil {
		return nil, fmt.Errorf("creating self-signed certificates: %w", err)
	}
	c, err := o.genericConfig()
	if err != nil {
		return nil, err
	}
	clientCA, err := o.clientCAProvider()
	if err != nil {
		return nil, err
	}
	if err := o.RecommendedOptions.ApplyTo(c); err != nil {
		return nil, err
	}
	if err := rememberVerifiedChains(&c.Authentication, clientCA); err != nil {
		return nil, err
	}
	maxRestore, err := o.maxRestoreBytes()
	if err != nil {
		return nil, err
	}
	config := &apiserver.Config{GenericConfig: c, ExtraConfig: apiserver.ExtraConfig{WatchBufferSize: o.WatchBufferSize}}
	config.ExtraConfig.Restore.MaxBytes = maxRestore
	resolver := &backup.Resolver{LocalRoot: o.BackupDir}
	if resolver.LocalRoot == "" && o.BackupLocalDataDir != "" {
		resolver.LocalRoot = filepath.Join(o.BackupLocalDataDir, "backups")
	}
	config.ExtraConfig.BackupResolver = resolver
	var kube kubernetes.Interface
	if c.ClientConfig != nil {
		if kube, err = kubernetes.NewForConfig(c.ClientConfig); err != nil {
			return nil, err
		}
		// S3 destinations are read with the credentials in the Secret each instance names.
		resolver.Credentials = backup.SecretCredentials{Client: kube}
	}
	switch {
	case o.BackupLocalDataDir != "":
		// Backups reach the members a local-backend controller runs on this machine, and
		// restores reach that controller through its data directory.
		config.ExtraConfig.BackupDialer = local.Dialer{Dir: o.BackupLocalDataDir}
		config.ExtraConfig.Restore.Stager = local.Stager{Dir: o.BackupLocalDataDir}
	case kube != nil:
		// Backups reach the members the kubernetes backend runs (StatefulSet pods, TLS Secret).
		dialer, err := kubebackend.New(kubebackend.Options{Client: kube})
		if err != nil {
			return nil, err
		}
		config.ExtraConfig.BackupDialer = dialer
		// Restored snapshots reach the member pods through the instance's S3 destination.
		config.ExtraConfig.Restore.Stager = kubebackend.Stager{Client: kube, Resolver: resolver}
	}
	return config, nil
}

// RunAggregated runs the aggregated mode until ctx is done.
func (o *Options) RunAggregated(ctx context.Context) error {
	config, err := o.Config()
	if err != nil {
		return err
	}
	server, err := config.Complete().New()
	if err != nil {
		return err
	}
	if informers := config.GenericConfig.SharedInformerFactory; informers != nil {
		server.GenericAPIServer.AddPostStartHookOrDie("start-etcdaas-apiserver-informers", func(hookCtx genericapiserver.PostStartHookContext) error {
			informers.Start(hookCtx.Done())
			return nil
		})
	}
	return server.GenericAPIServer.PrepareRun().RunWithContext(ctx)
}

// NewCommand returns the etcdaas-apiserver command with the default options.
func NewCommand(ctx context.Context, out, errOut io.Writer) *cobra.Command {
	return NewCommandWithOptions(ctx, NewOptions(), out, errOut)
}

// NewCommandWithOptions returns the etcdaas-apiserver command over o, so that a caller can
// preset options the flags do not cover, such as Standalone.PostStartHooks (the in-process
// controller), and add its own flags to the command.
func NewCommandWithOptions(ctx context.Context, o *Options, out, errOut io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "etcdaas-apiserver",
		Short: "Serve the etcdaas.dev API (ETCDInstance) as an aggregated or standalone API server",
		Long: `etcdaas-apiserver serves etcdaas.dev/v1beta1 and etcdaas.dev/v1alpha1 ETCDInstances.

Aggregated mode (default): runs behind kube-apiserver through APIServices, with delegated
authentication and authorization and its own etcd (--etcd-servers).

Standalone mode (--standalone --data-dir DIR): one process, no cluster. Embedded etcd in
DIR/etcd, a CA and certificates in DIR/pki, and DIR/kubeconfig for an admin
(group system:masters). Listens on 127.0.0.1 only:

  etcdaas-apiserver --standalone --data-dir _output/standalone
  kubectl --kubeconfig _output/standalone/kubeconfig get etcd`,
		SilenceUsage: true,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) != 0 {
				return fmt.Errorf("unexpected arguments %q", args)
			}
			if err := o.Complete(c.Flags()); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			if o.Standalone.Enabled {
				return o.RunStandalone(c.Context(), out)
			}
			return o.RunAggregated(c.Context())
		},
	}
	cmd.SetContext(ctx)
	cmd.SetOut(out)
	cmd.SetErr(errOut)
	o.AddFlags(cmd.Flags())
	return cmd
}
