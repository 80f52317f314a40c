package kubernetes

import (
	"fmt"
	"maps"
	"sort"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
	"github.com/etcdaas/etcdaas/pkg/pki"
)

// Ports and paths inside member pods.
const (
	ClientPort  = 2379
	PeerPort    = 2380
	MetricsPort = 2381

	dataVolume = "data"
	dataDir    = "/var/lib/etcd"
	tlsVolume  = "tls"
	tlsDir     = "/etc/etcd/tls"

	// DefaultStorageSize is each member's volume size when spec.storage.size is not set.
	DefaultStorageSize = "1Gi"
	// DefaultClusterDomain is the cluster's DNS domain.
	DefaultClusterDomain = "cluster.local"

	// MemberUID is the user and group members run as (and own their volumes with).
	MemberUID int64 = 65532

	// annotationClusterToken on the StatefulSet records the initial cluster token, which
	// members created later must start with.
	annotationClusterToken = "etcdaas.dev/cluster-token"
)

// DefaultImageTags maps the etcd minor versions the kubernetes backend runs to release tags.
var DefaultImageTags = map[string]string{
	"3.5": "v3.5.21",
	"3.6": "v3.6.5",
	"3.7": "v3.7.3",
}

// Secret keys of the TLS Secret.
const (
	SecretCACert     = "ca.crt"
	SecretServerCert = "server.crt"
	SecretServerKey  = "server.key"
	SecretPeerCert   = "peer.crt"
	SecretPeerKey    = "peer.key"
	SecretClientCert = "client.crt"
	SecretClientKey  = "client.key"
)

// Names of the objects of an instance.
func statefulSetName(inst *v1beta1.ETCDInstance) string { return inst.Name }

// PeerServiceName is the headless Service giving members stable DNS names.
func PeerServiceName(inst *v1beta1.ETCDInstance) string { return inst.Name + "-peers" }

// ClientServiceName is the Service clients use.
func ClientServiceName(inst *v1beta1.ETCDInstance) string { return inst.Name }

// TLSSecretName is the Secret holding the instance's CA and certificates.
func TLSSecretName(inst *v1beta1.ETCDInstance) string { return inst.Name + "-tls" }

// ClientTLSSecretName is the Secret for the instance's clients: the CA certificate and the
// client certificate and key, without the members' server and peer keys.
func ClientTLSSecretName(inst *v1beta1.ETCDInstance) string { return inst.Name + "-client-tls" }

func pdbName(inst *v1beta1.ETCDInstance) string { return inst.Name }

func (b *Backend) scheme(inst *v1beta1.ETCDInstance) string {
	if inst.Spec.TLSEnabled() {
		return "https"
	}
	return "http"
}

// memberHost is the DNS name of a member's pod through the headless Service.
func (b *Backend) memberHost(inst *v1beta1.ETCDInstance, ordinal int) string {
	return fmt.Sprintf("%s.%s.%s.svc.%s", backend.MemberName(inst.Name, ordinal), PeerServiceName(inst), inst.Namespace, b.opts.ClusterDomain)
}

func (b *Backend) peerURL(inst *v1beta1.ETCDInstance, ordinal int) string {
	return fmt.Sprintf("%s://%s:%d", b.scheme(inst), b.memberHost(inst, ordinal), PeerPort)
}

func (b *Backend) clientURL(inst *v1beta1.ETCDInstance, ordinal int) string {
	return fmt.Sprintf("%s://%s:%d", b.scheme(inst), b.memberHost(inst, ordinal), ClientPort)
}

// Image returns the etcd image for spec.version, or a PermanentError for versions without one.
func (b *Backend) Image(inst *v1beta1.ETCDInstance) (string, error) {
	tag, err := b.releaseTag(inst)
	if err != nil {
		return "", err
	}
	return b.image.image(tag), nil
}

// Release returns the etcd release the members of inst run once rolled, such as "3.7.3", as
// they report it; "" when the image's release tag does not name one.
func (b *Backend) Release(inst *v1beta1.ETCDInstance) (string, error) {
	tag, err := b.releaseTag(inst)
	if err != nil {
		return "", err
	}
	release := strings.TrimPrefix(tag, "v")
	if parts := strings.Split(release, "."); len(parts) != 3 {
		return "", nil
	}
	return release, nil
}

// releaseTag is the release tag of spec.version: a release (3.7.2) names its own (v3.7.2),
// a minor version (3.7) the one ImageTags maps it to.
func (b *Backend) releaseTag(inst *v1beta1.ETCDInstance) (string, error) {
	v := strings.TrimPrefix(inst.Spec.Version, "v")
	if v == "" {
		v = etcdaas.DefaultVersion
	}
	if strings.Count(v, ".") == 2 {
		return "v" + v, nil
	}
	tag, ok := b.opts.ImageTags[v]
	if !ok {
		known := make([]string, 0, len(b.opts.ImageTags))
		for k := range b.opts.ImageTags {
			known = append(known, k)
		}
		sort.Strings(known)
		return "", backend.Permanent("UnsupportedVersion", "etcd version %q is not available: the kubernetes backend runs %s, or a release such as 3.7.3", inst.Spec.Version, strings.Join(known, ", "))
	}
	return tag, nil
}

func ownerRefs(inst *v1beta1.ETCDInstance) []metav1.OwnerReference {
	return []metav1.OwnerReference{*metav1.NewControllerRef(inst, v1beta1.SchemeGroupVersion.WithKind("ETCDInstance"))}
}

func objectMeta(inst *v1beta1.ETCDInstance, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:            name,
		Namespace:       inst.Namespace,
		Labels:          etcdaas.MemberLabels(inst.Name),
		OwnerReferences: ownerRefs(inst),
	}
}

// peerService is the headless Service that gives every member a DNS name, published before
// the member is ready so that peers find each other while the cluster forms.
func peerService(inst *v1beta1.ETCDInstance) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: objectMeta(inst, PeerServiceName(inst)),
		Spec: corev1.ServiceSpec{
			ClusterIP:                corev1.ClusterIPNone,
			PublishNotReadyAddresses: true,
			Selector:                 etcdaas.MemberLabels(inst.Name),
			Ports: []corev1.ServicePort{
				{Name: "client", Port: ClientPort, TargetPort: intstr.FromInt32(ClientPort), Protocol: corev1.ProtocolTCP},
				{Name: "peer", Port: PeerPort, TargetPort: intstr.FromInt32(PeerPort), Protocol: corev1.ProtocolTCP},
			},
		},
	}
}

// clientService load-balances clients over the ready members.
func clientService(inst *v1beta1.ETCDInstance) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: objectMeta(inst, ClientServiceName(inst)),
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: etcdaas.MemberLabels(inst.Name),
			Ports: []corev1.ServicePort{
				{Name: "client", Port: ClientPort, TargetPort: intstr.FromInt32(ClientPort), Protocol: corev1.ProtocolTCP},
			},
		},
	}
}

// podDisruptionBudget keeps a quorum of the members through voluntary disruptions.
func podDisruptionBudget(inst *v1beta1.ETCDInstance, members int) *policyv1.PodDisruptionBudget {
	return &policyv1.PodDisruptionBudget{
		ObjectMeta: objectMeta(inst, pdbName(inst)),
		Spec: policyv1.PodDisruptionBudgetSpec{
			MinAvailable: ptr.To(intstr.FromInt32(int32(backend.Quorum(members)))),
			Selector:     &metav1.LabelSelector{MatchLabels: etcdaas.MemberLabels(inst.Name)},
		},
	}
}

// tlsSecret holds the CAs the members trust (ca.crt: the instance's CA, and an older one
// while certificates it signed are in use) and the server, peer and client certificates;
// never the CA's key (caSecret).
func tlsSecret(inst *v1beta1.ETCDInstance, data map[string][]byte) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: objectMeta(inst, TLSSecretName(inst)),
		Type:       corev1.SecretTypeOpaque,
		Data:       maps.Clone(data),
	}
}

// caSecret holds the instance's CA certificate and key, for the controller only: no pod
// mounts it.
func caSecret(inst *v1beta1.ETCDInstance, ca *pki.CA) (*corev1.Secret, error) {
	key, err := ca.KeyPEM()
	if err != nil {
		return nil, err
	}
	return &corev1.Secret{
		ObjectMeta: objectMeta(inst, CASecretName(inst)),
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{SecretCACert: ca.CertPEM, SecretCAKey: key},
	}, nil
}

// clientTLSSecret holds what a client of the instance needs of data, the TLS Secret's: the
// CA certificate and the client certificate and key, under the same keys.
func clientTLSSecret(inst *v1beta1.ETCDInstance, data map[string][]byte) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: objectMeta(inst, ClientTLSSecretName(inst)),
		Type:       corev1.SecretTypeOpaque,
		Data: map[string][]byte{
			SecretCACert: data[SecretCACert], SecretClientCert: data[SecretClientCert], SecretClientKey: data[SecretClientKey],
		},
	}
}

// memberConfig is what a member pod needs to know about the cluster when it starts with an
// empty data directory. Members with data ignore it, which is why changing it only affects
// members created afterwards (the StatefulSet uses the OnDelete update strategy).
type memberConfig struct {
	replicas       int32
	initialCluster string
	clusterState   string
	token          string
	// seed, when set, builds member 0's data from a snapshot before etcd starts.
	seed *seed
	// trust is the record of the CAs member pods trust (annotationTrustedCA), "" without TLS.
	trust string
	// etcdDefaultQuota leaves the members' database quota at etcd's default rather than the
	// one their volume holds (quotaBackendBytes): the StatefulSet was made by a controller
	// from before the quota followed the volume (legacyQuota).
	etcdDefaultQuota bool
}

// statefulSet runs the members.
func (b *Backend) statefulSet(inst *v1beta1.ETCDInstance, image string, mc memberConfig) *appsv1.StatefulSet {
	labels := etcdaas.MemberLabels(inst.Name)
	meta := objectMeta(inst, statefulSetName(inst))
	meta.Annotations = map[string]string{annotationClusterToken: mc.token}
	template := metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{
		annotationPodResources: resourcesRecord(memberResources(inst)),
	}}
	if mc.trust != "" {
		template.Annotations[annotationTrustedCA] = mc.trust
	}
	spec := b.memberPodSpec(inst, image, mc)
	if mc.seed != nil {
		meta.Annotations[annotationSeed] = mc.seed.annotation()
		template.Annotations[annotationPodSeed] = mc.seed.ID
		spec.InitContainers = []corev1.Container{b.seedInitContainer(inst, mc)}
	}
	return &appsv1.StatefulSet{
		ObjectMeta: meta,
		Spec: appsv1.StatefulSetSpec{
			Replicas:            ptr.To(mc.replicas),
			ServiceName:         PeerServiceName(inst),
			Selector:            &metav1.LabelSelector{MatchLabels: labels},
			PodManagementPolicy: appsv1.OrderedReadyPodManagement,
			// Template changes (the initial cluster of the next member) never restart
			// running members: members change one at a time through the etcd API.
			UpdateStrategy: appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType},
			// A removed member's volume goes with it: its data is never reused.
			PersistentVolumeClaimRetentionPolicy: &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
				WhenDeleted: appsv1.DeletePersistentVolumeClaimRetentionPolicyType,
				WhenScaled:  appsv1.DeletePersistentVolumeClaimRetentionPolicyType,
			},
			Template:             corev1.PodTemplateSpec{ObjectMeta: template, Spec: spec},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{dataVolumeClaim(inst)},
		},
	}
}

// memberPodSpec is the pod of one member: etcd configured through its environment, its data
// volume and, with TLS, the instance's certificates.
func (b *Backend) memberPodSpec(inst *v1beta1.ETCDInstance, image string, mc memberConfig) corev1.PodSpec {
	env := b.memberEnv(inst, mc)
	mounts := []corev1.VolumeMount{{Name: dataVolume, MountPath: dataDir}}
	var volumes []corev1.Volume
	if inst.Spec.TLSEnabled() {
		env = append(env, memberTLSEnv(inst)...)
		mounts = append(mounts, corev1.VolumeMount{Name: tlsVolume, MountPath: tlsDir, ReadOnly: true})
		volumes = append(volumes, corev1.Volume{Name: tlsVolume, VolumeSource: corev1.VolumeSource{
			// Readable by the members' group (fsGroup), never by others.
			Secret: &corev1.SecretVolumeSource{SecretName: TLSSecretName(inst), DefaultMode: ptr.To[int32](0o440)},
		}})
	}
	return corev1.PodSpec{
		Containers: []corev1.Container{{
			Name:    "etcd",
			Image:   image,
			Command: []string{"etcd"},
			Env:     env,
			// etcd logs its fatal error last: the status quotes it when the member crashes.
			TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
			Ports: []corev1.ContainerPort{
				{Name: "client", ContainerPort: ClientPort},
				{Name: "peer", ContainerPort: PeerPort},
				{Name: "metrics", ContainerPort: MetricsPort},
			},
			VolumeMounts: mounts,
			// Ready: the member serves reads and sees no alarm but NOSPACE, which every member
			// reports once one raises it and which the controller clears by defragmenting
			// (an unready cluster could not be defragmented). Live: it serves local reads;
			// restarting a member never cleared an alarm.
			ReadinessProbe: memberProbe(etcdcluster.ReadinessPath, 3),
			LivenessProbe:  memberProbe(etcdcluster.LivenessPath, 8),
			// spec.resources, with the backend's defaults (memberResources).
			Resources: memberResources(inst),
			SecurityContext: &corev1.SecurityContext{
				AllowPrivilegeEscalation: ptr.To(false),
				ReadOnlyRootFilesystem:   ptr.To(true),
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			},
		}},
		Volumes: volumes,
		// Nothing in a member pod (etcd, the seed init container) talks to the Kubernetes
		// API: the namespace's default ServiceAccount token stays out of it.
		AutomountServiceAccountToken: ptr.To(false),
		// An unprivileged user whatever the image's default, with the data volume and the
		// TLS Secret owned by its group.
		SecurityContext: &corev1.PodSecurityContext{
			RunAsUser:      ptr.To(MemberUID),
			RunAsGroup:     ptr.To(MemberUID),
			FSGroup:        ptr.To(MemberUID),
			RunAsNonRoot:   ptr.To(true),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		// Spread members over nodes when possible.
		Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
			PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
				Weight: 100,
				PodAffinityTerm: corev1.PodAffinityTerm{
					LabelSelector: &metav1.LabelSelector{MatchLabels: etcdaas.MemberLabels(inst.Name)},
					TopologyKey:   corev1.LabelHostname,
				},
			}},
		}},
	}
}

// memberProbe asks a member's metrics port for path every 5 seconds and fails after
// failures answers in a row that are not a success.
func memberProbe(path string, failures int32) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: path, Port: intstr.FromInt32(MetricsPort), Scheme: corev1.URISchemeHTTP,
		}},
		PeriodSeconds: 5, TimeoutSeconds: 3, FailureThreshold: failures,
	}
}

// memberEnv configures etcd: its name is the pod's, it advertises the pod's DNS name through
// the headless Service, its database quota fits its volume (unless mc keeps etcd's default),
// it compacts its history by itself, and it starts with mc when its data directory is empty.
func (b *Backend) memberEnv(inst *v1beta1.ETCDInstance, mc memberConfig) []corev1.EnvVar {
	scheme := b.scheme(inst)
	env := []corev1.EnvVar{
		{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "ETCD_NAME", Value: "$(POD_NAME)"},
		{Name: "ETCD_DATA_DIR", Value: dataDir + "/data"},
		{Name: "ETCD_LISTEN_PEER_URLS", Value: fmt.Sprintf("%s://0.0.0.0:%d", scheme, PeerPort)},
		{Name: "ETCD_LISTEN_CLIENT_URLS", Value: fmt.Sprintf("%s://0.0.0.0:%d", scheme, ClientPort)},
		{Name: "ETCD_LISTEN_METRICS_URLS", Value: fmt.Sprintf("http://0.0.0.0:%d", MetricsPort)},
		{Name: "ETCD_INITIAL_ADVERTISE_PEER_URLS", Value: fmt.Sprintf("%s://$(POD_NAME).%s.%s.svc.%s:%d", scheme, PeerServiceName(inst), inst.Namespace, b.opts.ClusterDomain, PeerPort)},
		{Name: "ETCD_ADVERTISE_CLIENT_URLS", Value: fmt.Sprintf("%s://$(POD_NAME).%s.%s.svc.%s:%d", scheme, PeerServiceName(inst), inst.Namespace, b.opts.ClusterDomain, ClientPort)},
		{Name: "ETCD_INITIAL_CLUSTER", Value: mc.initialCluster},
		{Name: "ETCD_INITIAL_CLUSTER_STATE", Value: mc.clusterState},
		{Name: "ETCD_INITIAL_CLUSTER_TOKEN", Value: mc.token},
		{Name: "ETCD_SNAPSHOT_COUNT", Value: "10000"},
	}
	if !mc.etcdDefaultQuota {
		// A quota the volume holds, with room to defragment (quotaBackendBytes).
		env = append(env, corev1.EnvVar{Name: quotaEnv, Value: strconv.FormatInt(quotaBackendBytes(inst), 10)})
	}
	// Else the history grows until the database reaches its quota unless every client
	// compacts.
	return append(env,
		corev1.EnvVar{Name: "ETCD_AUTO_COMPACTION_MODE", Value: b.opts.AutoCompaction.Mode},
		corev1.EnvVar{Name: "ETCD_AUTO_COMPACTION_RETENTION", Value: b.opts.AutoCompaction.Retention})
}

// memberTLSEnv turns on client and peer TLS with certificate authentication, with the
// certificates of the instance's TLS Secret. The peer port accepts only the members' peer
// certificate: the client certificate (Secret NAME-client-tls, for users) has the same CA.
func memberTLSEnv(inst *v1beta1.ETCDInstance) []corev1.EnvVar {
	return []corev1.EnvVar{
		{Name: "ETCD_CERT_FILE", Value: tlsDir + "/" + SecretServerCert},
		{Name: "ETCD_KEY_FILE", Value: tlsDir + "/" + SecretServerKey},
		{Name: "ETCD_TRUSTED_CA_FILE", Value: tlsDir + "/" + SecretCACert},
		{Name: "ETCD_CLIENT_CERT_AUTH", Value: "true"},
		{Name: "ETCD_PEER_CERT_FILE", Value: tlsDir + "/" + SecretPeerCert},
		{Name: "ETCD_PEER_KEY_FILE", Value: tlsDir + "/" + SecretPeerKey},
		{Name: "ETCD_PEER_TRUSTED_CA_FILE", Value: tlsDir + "/" + SecretCACert},
		{Name: "ETCD_PEER_CLIENT_CERT_AUTH", Value: "true"},
		{Name: "ETCD_PEER_CERT_ALLOWED_CN", Value: peerCommonName(inst)},
	}
}

// dataVolumeClaim is the template of each member's data volume: spec.storage's size and
// class, or DefaultStorageSize on the default class.
func dataVolumeClaim(inst *v1beta1.ETCDInstance) corev1.PersistentVolumeClaim {
	size := resource.MustParse(DefaultStorageSize)
	var storageClass *string
	if s := inst.Spec.Storage; s != nil {
		if s.VolumeSize != nil {
			size = *s.VolumeSize
		}
		storageClass = s.StorageClassName
	}
	return corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: dataVolume, Labels: etcdaas.MemberLabels(inst.Name)},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: storageClass,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
		},
	}
}
