// Command etcdaas-controller runs ETCDInstances: it watches them through the etcdaas API and
// runs their members with the local backend (embedded etcd servers in this process) or the
// kubernetes backend (StatefulSets).
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/server/healthz"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/etcdaas/etcdaas/pkg/backup"
	"github.com/etcdaas/etcdaas/pkg/controller"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	kubebackend "github.com/etcdaas/etcdaas/pkg/controller/backend/kubernetes"
	"github.com/etcdaas/etcdaas/pkg/controller/backend/local"
	"github.com/etcdaas/etcdaas/pkg/controller/metrics"
	"github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned"
)

type flags struct {
	kubeconfig        string
	backend           string
	dataDir           string
	backupDir         string
	namespace         string
	workers           int
	leaderElect       bool
	leaseNamespace    string
	leaseName         string
	etcdImage         string
	upgradeTimeout    time.Duration
	toolsImage        string
	snapshotCount     uint64
	quotaBackendBytes int64
	compactionMode    string
	compactionKeep    string
	metricsAddress    string
	s3CredsFile       string
	repairGrace       time.Duration
	defragFreePercent int32
	defragFreeBytes   string
	defragTimeout     time.Duration
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == SeedMemberCommand {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := seedMember(ctx, os.Args[2:], os.Getenv)
		stop()
		if err != nil {
			klog.ErrorS(err, "Seeding the member failed")
			klog.Flush()
			// The last line is the pod's termination message, which the controller quotes.
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		klog.Flush()
		return
	}
	f := flags{}
	fs := newFlagSet(&f)
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, f); err != nil {
		klog.ErrorS(err, "etcdaas-controller failed")
		klog.Flush()
		os.Exit(1)
	}
	klog.Flush()
}

// newFlagSet registers the command's flags into f.
func newFlagSet(f *flags) *pflag.FlagSet {
	fs := pflag.NewFlagSet("etcdaas-controller", pflag.ContinueOnError)
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "Path to a kubeconfig for the etcdaas API (and, with --backend=kubernetes or --leader-elect, the cluster). Empty: in-cluster configuration.")
	fs.StringVar(&f.backend, "backend", "kubernetes", "Where members run: kubernetes (StatefulSets) or local (embedded etcd servers in this process).")
	fs.StringVar(&f.dataDir, "data-dir", "", "Local backend: directory for the members' data (DIR/instances/<namespace>/<name>/<member>).")
	fs.StringVar(&f.backupDir, "backup-dir", "", "Directory of the backups of spec.backup.destination.local (DIR/<namespace>/<name>/). Default with --backend=local: DATA_DIR/backups; else local destinations are refused.")
	fs.StringVar(&f.namespace, "namespace", "", "Only reconcile ETCDInstances in this namespace (default: all).")
	fs.IntVar(&f.workers, "workers", 2, "Instances reconciled in parallel.")
	fs.BoolVar(&f.leaderElect, "leader-elect", true, "Act only while holding a coordination.k8s.io Lease, so that several replicas can run. Needs a cluster: turn it off against a standalone server.")
	fs.StringVar(&f.leaseNamespace, "leader-elect-namespace", "etcdaas-system", "Namespace of the leader election Lease.")
	fs.StringVar(&f.leaseName, "leader-elect-name", "etcdaas-controller", "Name of the leader election Lease.")
	fs.StringVar(&f.etcdImage, "etcd-image", kubebackend.DefaultImage, "Kubernetes backend: the etcd image of members. A repository (members of etcd 3.7 run REPOSITORY:v3.7.3, the release tag of spec.version), or REPOSITORY:TAG where {tag} in TAG stands for that release tag (e.g. registry.internal/etcd:{tag}-mirror). Without internet access, point it at a registry of your own.")
	fs.DurationVar(&f.upgradeTimeout, "upgrade-step-timeout", kubebackend.DefaultUpgradeStepTimeout, "Kubernetes backend: how long a member a version upgrade restarted has to become healthy on its new image before the upgrade stops (condition Degraded, reason UpgradeFailed).")
	fs.StringVar(&f.toolsImage, "tools-image", "", "Kubernetes backend: the etcdaas image, whose seed-member step restores member data from a backup (spec.restoreFrom, the restore subresource) as an init container. Default: this pod's own image ($POD_NAMESPACE/$POD_NAME); without either, restores are refused.")
	fs.Uint64Var(&f.snapshotCount, "snapshot-count", 0, "Local backend: etcd --snapshot-count of the members (0: 10000).")
	fs.Int64Var(&f.quotaBackendBytes, "quota-backend-bytes", 0, "Local backend: etcd --quota-backend-bytes of the members (0: etcd's default).")
	fs.StringVar(&f.compactionMode, "auto-compaction-mode", backend.DefaultAutoCompactionMode, "etcd --auto-compaction-mode of the members: periodic (--auto-compaction-retention is a duration, or a number of hours) or revision (a number of revisions).")
	fs.StringVar(&f.compactionKeep, "auto-compaction-retention", backend.DefaultAutoCompactionRetention, "etcd --auto-compaction-retention of the members: how much history they keep, compacting older revisions by themselves so that the history does not grow until the database reaches its quota; 0 turns auto-compaction off. Kubernetes backend: a change restarts no member; pods made before keep theirs.")
	fs.StringVar(&f.metricsAddress, "metrics-bind-address", ":8080", "Address serving Prometheus metrics on /metrics and the health checks /livez, /readyz and /healthz over plain HTTP (as controller-runtime's default); 0 turns both off. The metrics name instances and members, nothing secret.")
	fs.StringVar(&f.s3CredsFile, "s3-credentials-file", "", "Against a server without Secrets (a standalone etcdaas-apiserver): the S3 credentials of spec.backup.destination.s3, as an AWS shared credentials file (profile default: aws_access_key_id, aws_secret_access_key). Empty: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from the environment. Against a cluster, credentials always come from the Secret credentialsSecretRef names.")
	fs.DurationVar(&f.repairGrace, "member-repair-grace-period", backend.DefaultMemberRepairGracePeriod, "How long a voting member may stay unhealthy before it is replaced by a new member (removed, its data discarded, a new member added as a learner and promoted), one at a time and only while quorum holds. Local backend: its embedded server keeps dying or its data is lost or corrupt; kubernetes backend: its pod is not Ready or its volume is gone. 0 turns repair off.")
	fs.Int32Var(&f.defragFreePercent, "defrag-free-percent", controller.DefaultDefragFreePercent, "A member is defragmented once this share of its database file, in percent (1-100), is free (dbSize - dbSizeInUse) and --defrag-free-bytes too. spec.defragmentation.freePercent overrides it per instance.")
	fs.StringVar(&f.defragFreeBytes, "defrag-free-bytes", "64Mi", "A member is defragmented once this much of its database file is free (a quantity such as 64Mi) and --defrag-free-percent too. spec.defragmentation.freeBytes overrides it per instance.")
	fs.DurationVar(&f.defragTimeout, "defrag-timeout", controller.DefaultDefragTimeout, "Bound on the defragmentation of one member.")
	fs.AddGoFlagSet(goFlagSet())
	return fs
}

func run(ctx context.Context, f flags) error {
	// An empty --kubeconfig means the in-cluster configuration.
	config, err := clientcmd.BuildConfigFromFlags("", f.kubeconfig)
	if err != nil {
		return fmt.Errorf("loading the client configuration: %w", err)
	}
	config.UserAgent = controller.Component
	client, err := versioned.NewForConfig(config)
	if err != nil {
		return err
	}
	var b backend.Backend
	// The cluster (or the standalone server) holds the Events, and with the kubernetes
	// backend or leader election the members' objects and the Lease.
	kube, err := kubernetes.NewForConfig(config)
	if err != nil {
		return err
	}
	creds, err := s3Credentials(f, kube)
	if err != nil {
		return err
	}
	if f.repairGrace < 0 {
		return fmt.Errorf("--member-repair-grace-period %s is negative", f.repairGrace)
	}
	if f.backend == "kubernetes" && f.toolsImage == "" {
		f.toolsImage = ownImage(ctx, kube, os.Getenv)
	}
	if b, err = newBackend(f, kube, client, creds); err != nil {
		return err
	}
	defer func() {
		if err := b.Close(); err != nil {
			klog.ErrorS(err, "Closing the backend")
		}
	}()
	defrag, err := defragOptions(f)
	if err != nil {
		return err
	}
	recorder, stopEvents := controller.NewEventRecorder(ctx, kube)
	defer stopEvents()
	opts := controller.Options{Client: client, Backend: b, Namespace: f.namespace, Workers: f.workers, Events: recorder,
		Backups: backupOptions(f, b, creds), Defrag: defrag}
	if opts.LeaderElection, err = leaderElection(f, kube); err != nil {
		return err
	}
	c, err := controller.New(opts)
	if err != nil {
		return err
	}
	if f.metricsAddress != "0" {
		if err := serveMetrics(ctx, f.metricsAddress, c); err != nil {
			return err
		}
	}
	return c.Run(ctx)
}

// leaderElection is the controller's leader election with --leader-elect (a Lease held by
// this process), nil without.
func leaderElection(f flags, kube kubernetes.Interface) (*controller.LeaderElection, error) {
	if !f.leaderElect {
		return nil, nil
	}
	host, err := os.Hostname()
	if err != nil {
		return nil, err
	}
	return &controller.LeaderElection{
		Client: kube, Namespace: f.leaseNamespace, Name: f.leaseName,
		Identity: fmt.Sprintf("%s_%d_%d", host, os.Getpid(), time.Now().UnixNano()),
	}, nil
}

// serveMetrics serves the metrics and the health of c (its informers synced) on address
// until ctx ends.
func serveMetrics(ctx context.Context, address string, c *controller.Controller) error {
	l, err := net.Listen("tcp", address)
	if err != nil {
		return fmt.Errorf("serving metrics: %w", err)
	}
	go func() {
		if err := metrics.Serve(ctx, l, healthz.NamedCheck("informer-sync", c.CheckSynced)); err != nil {
			klog.ErrorS(err, "Serving metrics")
		}
	}()
	return nil
}

// backupOptions configures scheduled backups: members are reached like the backup
// subresource reaches them; S3 credentials come from creds (see s3Credentials).
func backupOptions(f flags, b backend.Backend, creds backup.Credentials) controller.BackupOptions {
	opts := controller.BackupOptions{Resolver: backup.Resolver{LocalRoot: f.backupDir, Credentials: creds}}
	switch b := b.(type) {
	case *kubebackend.Backend:
		opts.Dialer = b
	default:
		opts.Dialer = local.Dialer{Dir: f.dataDir}
		if opts.Resolver.LocalRoot == "" {
			opts.Resolver.LocalRoot = filepath.Join(f.dataDir, "backups")
		}
	}
	return opts
}

// s3Credentials decides where S3 credentials come from. A controller whose API serves
// Secrets (a cluster, whatever the backend) reads the Secret an instance's
// credentialsSecretRef names; one against a server without Secrets (a standalone
// etcdaas-apiserver, with the local backend) uses the server's own: --s3-credentials-file
// when given, else the environment.
func s3Credentials(f flags, kube kubernetes.Interface) (backup.Credentials, error) {
	secrets, err := servesSecrets(kube)
	if err != nil {
		return nil, fmt.Errorf("finding out whether the server serves Secrets (for S3 credentials): %w", err)
	}
	switch {
	case secrets && f.s3CredsFile != "":
		return nil, errors.New("--s3-credentials-file: the server serves Secrets, so S3 credentials come from the Secret each instance's credentialsSecretRef names; drop the flag")
	case secrets:
		return backup.SecretCredentials{Client: kube}, nil
	case f.s3CredsFile != "":
		return backup.FileCredentials{Path: f.s3CredsFile}, nil
	default:
		return backup.EnvCredentials{}, nil
	}
}

// servesSecrets reports whether the server kube talks to serves core/v1 Secrets.
func servesSecrets(kube kubernetes.Interface) (bool, error) {
	resources, err := kube.Discovery().ServerResourcesForGroupVersion("v1")
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(resources.APIResources, func(r metav1.APIResource) bool { return r.Name == "secrets" }), nil
}

// repairGraceOption is the backends' grace period for --member-repair-grace-period, on which 0
// turns repair off.
func (f flags) repairGraceOption() time.Duration {
	if f.repairGrace == 0 {
		return -1
	}
	return f.repairGrace
}

// defragOptions are the defragmentation thresholds of the --defrag-* flags.
func defragOptions(f flags) (controller.DefragOptions, error) {
	if f.defragFreePercent < 1 || f.defragFreePercent > 100 {
		return controller.DefragOptions{}, fmt.Errorf("--defrag-free-percent %d: want 1 to 100", f.defragFreePercent)
	}
	q, err := resource.ParseQuantity(f.defragFreeBytes)
	if err != nil || q.Sign() < 0 {
		return controller.DefragOptions{}, fmt.Errorf("--defrag-free-bytes %q: want a quantity of zero or more, such as 64Mi", f.defragFreeBytes)
	}
	if f.defragTimeout <= 0 {
		return controller.DefragOptions{}, fmt.Errorf("--defrag-timeout %s: want a positive duration", f.defragTimeout)
	}
	return controller.DefragOptions{FreePercent: f.defragFreePercent, FreeBytes: q.Value(), Timeout: f.defragTimeout}, nil
}

// newBackend is the backend f asks for; kube is the cluster of the kubernetes backend, client
// reads the source instances of spec.restoreFrom for the local backend, with creds.
func newBackend(f flags, kube kubernetes.Interface, client versioned.Interface, creds backup.Credentials) (backend.Backend, error) {
	compaction := backend.AutoCompaction{Mode: f.compactionMode, Retention: f.compactionKeep}
	if err := compaction.Validate(); err != nil {
		return nil, err
	}
	switch f.backend {
	case "local":
		if f.dataDir == "" {
			return nil, errors.New("--data-dir is required with --backend=local")
		}
		// The backups spec.restoreFrom names are found as the backup step finds them.
		restore := controller.BackupRestoreSource{Client: client, Resolver: backupOptions(f, nil, creds).Resolver}
		return local.New(local.Options{Dir: f.dataDir, SnapshotCount: f.snapshotCount, QuotaBackendBytes: f.quotaBackendBytes,
			AutoCompaction: compaction, RestoreSource: restore, MemberRepairGracePeriod: f.repairGraceOption()})
	case "kubernetes":
		b, err := kubebackend.New(kubebackend.Options{Client: kube, Image: f.etcdImage, UpgradeStepTimeout: f.upgradeTimeout, ToolsImage: f.toolsImage,
			RestoreSource:           controller.BackupRestoreSource{Client: client, Resolver: backupOptions(f, nil, creds).Resolver},
			MemberRepairGracePeriod: f.repairGraceOption(), AutoCompaction: compaction})
		if err != nil {
			return nil, fmt.Errorf("--etcd-image: %w", err)
		}
		return b, nil
	default:
		return nil, fmt.Errorf("--backend %q: want local or kubernetes", f.backend)
	}
}
