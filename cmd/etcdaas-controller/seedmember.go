package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/etcdaas/etcdaas/pkg/backup"
	kubebackend "github.com/etcdaas/etcdaas/pkg/controller/backend/kubernetes"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
	"github.com/etcdaas/etcdaas/pkg/memberseed"
	"github.com/etcdaas/etcdaas/pkg/snapshot"
)

// SeedMemberCommand is the first argument that runs the member-side seeding step instead of
// the controller: the kubernetes backend's init container of a member pod being restored.
const SeedMemberCommand = "seed-member"

// Environment of the seed-member command: the S3 credentials (from the Secret the backup
// destination names) and the destination's CA bundle.
const (
	envSeedCABundle = "ETCDAAS_S3_CA_BUNDLE"
)

// seedFlags are the seed-member command's flags; the kubernetes backend sets every one.
type seedFlags struct {
	id, member, podName, dataDir          string
	endpoint, bucket, prefix, region, key string
	sha256, etcdVersion, initialCluster   string
	clusterToken                          string
	revisionBump                          uint64
	// A recovery from quorum loss: the member's own database, or a snapshot streamed from
	// the surviving member at fromMember with the client certificate, if any.
	fromOwnData                      bool
	fromMember                       string
	clientCert, clientKey, trustedCA string
}

func newSeedFlagSet(f *seedFlags) *pflag.FlagSet {
	fs := pflag.NewFlagSet(SeedMemberCommand, pflag.ContinueOnError)
	fs.StringVar(&f.id, "id", "", "ID of the seed: a data directory built from it is kept.")
	fs.StringVar(&f.member, "member", "", "The member to build; any other pod (--pod-name) leaves its data alone.")
	fs.StringVar(&f.podName, "pod-name", os.Getenv("POD_NAME"), "This pod's name, the member it runs (default $POD_NAME).")
	fs.StringVar(&f.dataDir, "data-dir", "", "The member's etcd data directory.")
	fs.StringVar(&f.endpoint, "s3-endpoint", "", "The S3-compatible store holding the snapshot.")
	fs.StringVar(&f.bucket, "s3-bucket", "", "The bucket.")
	fs.StringVar(&f.prefix, "s3-prefix", "", "The prefix of the key.")
	fs.StringVar(&f.region, "s3-region", "", "The bucket's region.")
	fs.StringVar(&f.key, "key", "", "The snapshot's key below the prefix.")
	fs.StringVar(&f.sha256, "sha256", "", "The hex sha256 the snapshot must have.")
	fs.StringVar(&f.etcdVersion, "etcd-version", "", "The etcd minor the member runs; a newer snapshot is refused.")
	fs.StringVar(&f.initialCluster, "initial-cluster", "", "The new cluster, NAME=PEER_URL,...; it must name --member.")
	fs.StringVar(&f.clusterToken, "initial-cluster-token", "", "The new cluster's token.")
	fs.Uint64Var(&f.revisionBump, "revision-bump", 0, "Raise the restored revision by this much (and mark older ones compacted).")
	fs.BoolVar(&f.fromOwnData, "from-own-data", false, "Rebuild the member from its own database (a recovery from quorum loss whose survivor it is) instead of S3.")
	fs.StringVar(&f.fromMember, "from-member", "", "Rebuild the member from a snapshot streamed from the surviving member at this client URL instead of S3.")
	fs.StringVar(&f.clientCert, "client-cert", "", "With --from-member: the client certificate to reach the survivor with.")
	fs.StringVar(&f.clientKey, "client-key", "", "With --from-member: the client certificate's key.")
	fs.StringVar(&f.trustedCA, "trusted-ca", "", "With --from-member: the CA the survivor's serving certificate is checked against.")
	fs.AddGoFlagSet(goFlagSet())
	return fs
}

// seedMember runs the seed-member command with args (after its name).
func seedMember(ctx context.Context, args []string, getenv func(string) string) error {
	f := seedFlags{}
	if err := newSeedFlagSet(&f).Parse(args); err != nil {
		return err
	}
	if f.podName != f.member {
		klog.InfoS("Not the member being seeded: nothing to do", "pod", f.podName, "member", f.member)
		return nil
	}
	cluster, err := parseInitialCluster(f.initialCluster)
	if err != nil {
		return err
	}
	var self *snapshot.Member
	for i := range cluster {
		if cluster[i].Name == f.member {
			self = &cluster[i]
		}
	}
	if self == nil {
		return fmt.Errorf("--initial-cluster %q does not name member %q", f.initialCluster, f.member)
	}
	cfg := memberseed.Config{
		ID: f.id, Key: f.key, SHA256: f.sha256, EtcdVersion: f.etcdVersion, DataDir: f.dataDir,
		Member: *self, Cluster: cluster, ClusterToken: f.clusterToken, RevisionBump: f.revisionBump,
	}
	if cfg.Source, err = f.source(getenv); err != nil {
		return err
	}
	switch {
	case f.fromOwnData:
		cfg.FromOwnData = true // source() gave no Source for it
		klog.InfoS("Rebuilding the member from its own database", "member", f.member)
	case f.fromMember != "":
		cfg.Key = f.fromMember
		klog.InfoS("Seeding the member from a snapshot of the surviving member", "member", f.member, "survivor", f.fromMember)
	default:
		klog.InfoS("Seeding the member from a snapshot", "member", f.member, "source", cfg.Source, "key", f.key, "sha256", f.sha256)
	}
	res, err := memberseed.Seed(ctx, cfg)
	if err != nil {
		return err
	}
	if res.AlreadySeeded {
		klog.InfoS("The data directory was seeded from this snapshot before: kept", "member", f.member, "id", f.id)
		return nil
	}
	if res.ReplacedRevisionErr != nil {
		klog.InfoS("The revision of the data replaced could not be read: the controller's revision bump applies", "member", f.member, "revisionBump", res.RevisionBump, "err", res.ReplacedRevisionErr)
	}
	klog.InfoS("Seeded the member", "member", f.member, "revision", res.Info.Revision, "keys", res.Info.TotalKeys, "bytes", res.Info.Size,
		"replacedRevision", res.ReplacedRevision, "revisionBump", res.RevisionBump,
		"downloaded", res.Downloaded, "verified", res.Verified, "restored", res.Restored)
	return nil
}

// source is where the snapshot comes from: nothing for the member's own data, the surviving
// member (--from-member), or the S3 destination.
func (f *seedFlags) source(getenv func(string) string) (memberseed.Source, error) {
	switch {
	case f.fromOwnData && f.fromMember != "":
		return nil, errors.New("--from-own-data and --from-member exclude each other")
	case f.fromOwnData:
		return nil, nil
	case f.fromMember != "":
		access := &etcdcluster.Access{}
		if f.clientCert != "" || f.trustedCA != "" {
			tlsInfo := transport.TLSInfo{CertFile: f.clientCert, KeyFile: f.clientKey, TrustedCAFile: f.trustedCA}
			cfg, err := tlsInfo.ClientConfig()
			if err != nil {
				return nil, fmt.Errorf("loading the client certificate: %w", err)
			}
			access.TLS = cfg
		}
		return memberseed.MemberSource{Access: access}, nil
	}
	return backup.NewS3(backup.S3Config{Endpoint: f.endpoint, Bucket: f.bucket, Prefix: f.prefix, Region: f.region,
		AccessKeyID: getenv(backup.EnvAccessKeyID), SecretAccessKey: getenv(backup.EnvSecretAccessKey), CABundle: getenv(envSeedCABundle)})
}

// parseInitialCluster parses etcd's --initial-cluster.
func parseInitialCluster(s string) ([]snapshot.Member, error) {
	var out []snapshot.Member
	for _, part := range strings.Split(s, ",") {
		name, url, ok := strings.Cut(part, "=")
		if !ok || name == "" || url == "" {
			return nil, fmt.Errorf("--initial-cluster: %q is not NAME=PEER_URL", part)
		}
		out = append(out, snapshot.Member{Name: name, PeerURL: url})
	}
	if len(out) == 0 {
		return nil, errors.New("--initial-cluster is empty")
	}
	return out, nil
}

// ownImage is the image of this controller's own container, read from its pod
// ($POD_NAMESPACE/$POD_NAME), or "" outside a pod: the etcdaas image the seed step runs
// from, whatever registry or tag the deployment rewrote it to.
func ownImage(ctx context.Context, kube kubernetes.Interface, getenv func(string) string) string {
	namespace, name := getenv("POD_NAMESPACE"), getenv("POD_NAME")
	if namespace == "" || name == "" {
		klog.InfoS("Not in a pod ($POD_NAMESPACE, $POD_NAME unset) and no --tools-image: restores are refused")
		return ""
	}
	pod, err := kube.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		klog.ErrorS(err, "Reading this controller's pod for its image; restores are refused", "pod", namespace+"/"+name)
		return ""
	}
	for _, c := range pod.Spec.Containers {
		if len(c.Command) > 0 && c.Command[0] == kubebackend.SeedCommand[0] {
			klog.InfoS("Members are seeded with this controller's image", "image", c.Image)
			return c.Image
		}
	}
	klog.InfoS("This controller's pod runs no container of "+kubebackend.SeedCommand[0]+": restores are refused", "pod", namespace+"/"+name)
	return ""
}
