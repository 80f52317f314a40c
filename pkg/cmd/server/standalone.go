package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	apiserverapi "k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/apiserver/pkg/authentication/request/anonymous"
	"k8s.io/apiserver/pkg/authentication/request/union"
	x509request "k8s.io/apiserver/pkg/authentication/request/x509"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	"k8s.io/apiserver/pkg/authorization/path"
	authzunion "k8s.io/apiserver/pkg/authorization/union"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/klog/v2"

	"github.com/etcdaas/etcdaas/pkg/apiserver"
	"github.com/etcdaas/etcdaas/pkg/backup"
	"github.com/etcdaas/etcdaas/pkg/certcache"
	"github.com/etcdaas/etcdaas/pkg/controller"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	"github.com/etcdaas/etcdaas/pkg/controller/backend/local"
	"github.com/etcdaas/etcdaas/pkg/durable"
	"github.com/etcdaas/etcdaas/pkg/embedetcd"
	"github.com/etcdaas/etcdaas/pkg/pki"
	"github.com/etcdaas/etcdaas/pkg/registry/etcdinstance"
)

// Defaults of the standalone mode. Port 0 means a free port chosen at every start: the
// embedded storage etcd is reached only by this process, so its ports need not be stable.
const (
	DefaultStandaloneEtcdClientPort = 0
	DefaultStandaloneEtcdPeerPort   = 0

	// StandaloneAdminUser and StandaloneAdminGroup are the identity in the admin client
	// certificate written to the kubeconfig.
	StandaloneAdminUser  = "admin"
	StandaloneAdminGroup = "system:masters"

	standaloneEtcdName = "etcdaas-storage"
	standaloneContext  = "etcdaas-standalone"
	readyTimeout       = 2 * time.Minute
)

// StandaloneOptions configure the standalone mode.
type StandaloneOptions struct {
	// Enabled selects the standalone mode.
	Enabled bool
	// DataDir holds the embedded etcd's data (DataDir/etcd), the PKI (DataDir/pki, with the
	// embedded etcd's own CA in DataDir/pki/etcd) and the admin kubeconfig
	// (DataDir/kubeconfig). Everything in it is reused on restart.
	DataDir string
	// EtcdClientPort and EtcdPeerPort are the embedded etcd's ports on 127.0.0.1; 0 picks a
	// free port.
	EtcdClientPort int
	EtcdPeerPort   int
	// PostStartHooks run once the server serves, each with a loopback client configuration
	// authorized as system:masters. The in-process controller starts here. A hook that
	// returns an error stops the server.
	PostStartHooks []PostStartHook
	// Controller runs the controller in-process with the local backend: members are embedded
	// etcd servers with data under DataDir/instances. The --controller flag defaults it to
	// true; options built in code (tests) leave it off unless they ask.
	Controller bool
	// MemberRepairGracePeriod is how long the in-process controller lets a voting member
	// stay unhealthy before it replaces it; 0 turns repair off.
	MemberRepairGracePeriod time.Duration
}

// repairGrace is the backend's grace period for a --member-repair-grace-period flag, on
// which 0 turns repair off.
func repairGrace(flag time.Duration) time.Duration {
	if flag == 0 {
		return -1
	}
	return flag
}

// StandaloneBackupDir is where a standalone server keeps the backups of local destinations
// unless --backup-dir says otherwise: DataDir/backups/<namespace>/<name>/.
func StandaloneBackupDir(dataDir string) string { return filepath.Join(dataDir, "backups") }

// standaloneBackupDir is where this standalone server keeps the backups of local
// destinations: --backup-dir (a disk other than the members' data, say), or
// StandaloneBackupDir of dataDir.
func (o *Options) standaloneBackupDir(dataDir string) (string, error) {
	if o.BackupDir == "" {
		return StandaloneBackupDir(dataDir), nil
	}
	return filepath.Abs(o.BackupDir)
}

// PostStartHook is a function run once the standalone server serves.
type PostStartHook struct {
	// Name identifies the hook in /healthz/poststarthook/<name>.
	Name string
	// Run is called with a context cancelled when the server stops, and a privileged
	// loopback client configuration. It must not block: start goroutines and return.
	Run func(ctx context.Context, config *rest.Config) error
}

// AddFlags registers the standalone flags.
func (s *StandaloneOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&s.Enabled, "standalone", s.Enabled,
		"Run standalone: embedded etcd under --data-dir, a generated CA and certificates, a kubeconfig for an admin, listening on loopback only. No kube-apiserver needed.")
	fs.StringVar(&s.DataDir, "data-dir", s.DataDir,
		"Standalone mode: directory for the embedded etcd data, the PKI and the admin kubeconfig; reused across restarts.")
	fs.BoolVar(&s.Controller, "controller", true,
		"Standalone mode: run the controller in-process, members as embedded etcd servers under --data-dir/instances; instances must then ask for the embedded etcd version (others are refused at admission).")
	fs.IntVar(&s.EtcdClientPort, "standalone-etcd-client-port", s.EtcdClientPort,
		"Standalone mode: client port of the embedded storage etcd on 127.0.0.1 (0: a free port); it serves only clients with a certificate of its CA, --data-dir/pki/etcd/ca.crt, such as --data-dir/pki/apiserver-etcd-client.crt.")
	fs.IntVar(&s.EtcdPeerPort, "standalone-etcd-peer-port", s.EtcdPeerPort,
		"Standalone mode: peer port of the embedded storage etcd on 127.0.0.1 (0: a free port).")
	fs.DurationVar(&s.MemberRepairGracePeriod, "member-repair-grace-period", backend.DefaultMemberRepairGracePeriod,
		"Standalone mode, in-process controller: how long a voting member may stay unhealthy (its embedded server keeps dying, or its data is lost or corrupt) before it is replaced by a new member while quorum holds; 0 turns repair off.")
}

// completeStandalone defaults the bind address to 127.0.0.1 unless one was given.
func (o *Options) completeStandalone() error {
	if !o.bindAddressSet {
		o.RecommendedOptions.SecureServing.BindAddress = net.ParseIP("127.0.0.1")
	}
	return nil
}

// replacedFlagsSet returns the flags set in fs of the option sets standalone mode replaces
// with its own (standaloneRecommendedOptions): delegated authentication and authorization,
// admission and the kube-apiserver connection. None when fs is nil (options built in code).
func replacedFlagsSet(fs *pflag.FlagSet) []string {
	if fs == nil {
		return nil
	}
	replaced := pflag.NewFlagSet("replaced", pflag.ContinueOnError)
	genericoptions.NewDelegatingAuthenticationOptions().AddFlags(replaced)
	genericoptions.NewDelegatingAuthorizationOptions().AddFlags(replaced)
	genericoptions.NewAdmissionOptions().AddFlags(replaced)
	genericoptions.NewCoreAPIOptions().AddFlags(replaced)
	var set []string
	fs.Visit(func(f *pflag.Flag) {
		if replaced.Lookup(f.Name) != nil {
			set = append(set, f.Name)
		}
	})
	return set
}

// aggregatedOnlyFlags are etcdaas-apiserver's own flags of the aggregated mode.
var aggregatedOnlyFlags = []string{"alternate-dns", "backup-local-data-dir"}

// aggregatedFlagsSet returns the flags of aggregatedOnlyFlags set in fs, none when fs is nil.
func aggregatedFlagsSet(fs *pflag.FlagSet) []string {
	var set []string
	for _, name := range aggregatedOnlyFlags {
		if fs != nil && fs.Changed(name) {
			set = append(set, name)
		}
	}
	return set
}

// standaloneFlagsSet returns the flags set in fs that only standalone mode reads: those
// StandaloneOptions.AddFlags registers, but --standalone itself. None when fs is nil.
func standaloneFlagsSet(fs *pflag.FlagSet) []string {
	if fs == nil {
		return nil
	}
	own := pflag.NewFlagSet("standalone", pflag.ContinueOnError)
	(&StandaloneOptions{}).AddFlags(own)
	var set []string
	fs.Visit(func(f *pflag.Flag) {
		if f.Name != "standalone" && own.Lookup(f.Name) != nil {
			set = append(set, f.Name)
		}
	})
	return set
}

// validateAggregatedFlags refuses the standalone flags given without --standalone, which
// the aggregated mode would ignore.
func (o *Options) validateAggregatedFlags() []error {
	if len(o.standaloneFlagsSet) == 0 {
		return nil
	}
	return []error{fmt.Errorf("--%s can be used only with --standalone: they configure the standalone mode's data directory, "+
		"embedded storage etcd and in-process controller, which the aggregated mode does not run, so it would ignore them "+
		"(etcdaas-controller has its own --data-dir and --member-repair-grace-period)", strings.Join(o.standaloneFlagsSet, ", --"))}
}

// validateStandalone checks the options that matter in standalone mode.
func (o *Options) validateStandalone() []error {
	var errs []error
	if o.Standalone.DataDir == "" {
		errs = append(errs, errors.New("--data-dir is required with --standalone"))
	}
	if ip := o.RecommendedOptions.SecureServing.BindAddress; ip == nil || !ip.IsLoopback() {
		errs = append(errs, fmt.Errorf("--bind-address %v is not a loopback address: standalone mode authorizes every holder of its admin certificate and listens on loopback only (use 127.0.0.1 or ::1, or run the aggregated mode)", ip))
	}
	for name, port := range map[string]int{
		"--standalone-etcd-client-port": o.Standalone.EtcdClientPort,
		"--standalone-etcd-peer-port":   o.Standalone.EtcdPeerPort,
	} {
		if port < 0 || port > 65535 {
			errs = append(errs, fmt.Errorf("%s %d is not a port", name, port))
		}
	}
	if o.Standalone.MemberRepairGracePeriod < 0 {
		errs = append(errs, fmt.Errorf("--member-repair-grace-period %s is negative", o.Standalone.MemberRepairGracePeriod))
	}
	if servers := o.RecommendedOptions.Etcd.StorageConfig.Transport.ServerList; len(servers) > 0 {
		errs = append(errs, fmt.Errorf("--etcd-servers %v cannot be used with --standalone: standalone mode stores objects in its embedded etcd under --data-dir", servers))
	}
	if len(o.replacedFlagsSet) > 0 {
		errs = append(errs, fmt.Errorf("--%s cannot be used with --standalone: standalone mode authenticates clients by its own CA, "+
			"authorizes every holder of its certificates, runs no admission plugins and reaches no kube-apiserver, so it would ignore them "+
			"(the aggregated mode uses them)", strings.Join(o.replacedFlagsSet, ", --")))
	}
	if len(o.aggregatedFlagsSet) > 0 {
		errs = append(errs, fmt.Errorf("--%s cannot be used with --standalone: they configure the aggregated mode, while standalone mode "+
			"issues its own serving certificate and reaches its members under --data-dir", strings.Join(o.aggregatedFlagsSet, ", --")))
	}
	if o.Standalone.EtcdClientPort != 0 && o.Standalone.EtcdClientPort == o.Standalone.EtcdPeerPort {
		errs = append(errs, errors.New("--standalone-etcd-client-port and --standalone-etcd-peer-port must differ"))
	}
	errs = append(errs, o.RecommendedOptions.SecureServing.Validate()...)
	errs = append(errs, o.RecommendedOptions.Audit.Validate()...)
	errs = append(errs, o.RecommendedOptions.Features.Validate()...)
	errs = append(errs, o.ServerRun.Validate()...)
	errs = append(errs, o.validateWatchBuffer()...)
	return errs
}

// Standalone is a running standalone server.
type Standalone struct {
	// DataDir is the server's data directory.
	DataDir string
	// KubeconfigPath is the admin kubeconfig, DataDir/kubeconfig.
	KubeconfigPath string
	// URL is the server's address, such as https://127.0.0.1:6443.
	URL string
	// AdminConfig is a client configuration for the admin (system:masters).
	AdminConfig *rest.Config
	// EtcdEndpoint is the client URL of the embedded etcd that stores the objects.
	EtcdEndpoint string
	// EtcdTLS is what a client of that etcd needs: it serves only clients with a
	// certificate of its own CA (TrustedCAFile, DataDir/pki/etcd/ca.crt), such as the API
	// server's (CertFile and KeyFile, DataDir/pki/apiserver-etcd-client.{crt,key}).
	EtcdTLS transport.TLSInfo

	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// EtcdctlFlags are the etcdctl flags that reach the storage etcd: its endpoint, its CA and
// the API server's etcd client certificate.
func (s *Standalone) EtcdctlFlags() []string {
	return []string{"--endpoints=" + s.EtcdEndpoint, "--cacert=" + s.EtcdTLS.TrustedCAFile,
		"--cert=" + s.EtcdTLS.CertFile, "--key=" + s.EtcdTLS.KeyFile}
}

// Done is closed when the server has stopped and the embedded etcd is closed.
func (s *Standalone) Done() <-chan struct{} { return s.done }

// Err is why the server stopped; nil after a clean stop. Valid once Done is closed.
func (s *Standalone) Err() error { return s.err }

// Stop shuts the server down, closes the embedded etcd and waits for both.
func (s *Standalone) Stop() error {
	s.cancel()
	<-s.done
	return s.err
}

// RunStandalone runs the standalone mode until ctx is done, then stops cleanly.
func (o *Options) RunStandalone(ctx context.Context, out io.Writer) error {
	start := time.Now()
	s, err := o.StartStandalone(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "etcdaas-apiserver ready at %s in %s\nkubeconfig: %s\n  kubectl --kubeconfig %s get etcd\n",
		s.URL, time.Since(start).Round(time.Millisecond), s.KubeconfigPath, s.KubeconfigPath)
	fmt.Fprintf(out, "storage etcd (mutual TLS, certificates of its own CA): %s\n  etcdctl %s get --prefix --keys-only /registry/\n",
		s.EtcdEndpoint, strings.Join(s.EtcdctlFlags(), " "))
	select {
	case <-ctx.Done():
	case <-s.Done():
	}
	return s.Stop()
}

// StartStandalone starts the standalone mode and returns once /readyz succeeds. The server
// runs until ctx is done or Stop is called. Options must have been completed and validated
// (Complete, Validate); StartStandalone does both for options built in code.
func (o *Options) StartStandalone(ctx context.Context) (*Standalone, error) {
	dataDir, err := o.prepareStandalone()
	if err != nil {
		return nil, err
	}
	listener, err := o.listenFirst()
	if err != nil {
		return nil, err
	}
	creds, err := standalonePKI(filepath.Join(dataDir, "pki"), o.RecommendedOptions.SecureServing.BindAddress)
	if err != nil {
		_ = listener.Close()
		return nil, err
	}

	etcd, err := startEmbeddedEtcd(filepath.Join(dataDir, "etcd"), o.Standalone.EtcdClientPort, o.Standalone.EtcdPeerPort, creds.etcd)
	if err != nil {
		_ = listener.Close()
		return nil, err
	}
	// From here on, etcd must be closed on every path.
	runCtx, cancel := context.WithCancel(ctx)
	s := &Standalone{DataDir: dataDir, KubeconfigPath: filepath.Join(dataDir, "kubeconfig"), cancel: cancel, done: make(chan struct{}),
		EtcdEndpoint: etcdEndpoint(etcd), EtcdTLS: creds.etcd.Client}
	run, err := o.newStandaloneServer(s, etcd, creds)
	if err != nil {
		cancel()
		etcd.Close()
		_ = listener.Close()
		return nil, err
	}
	go s.serve(runCtx, run, etcd)

	if err := waitReady(runCtx, s); err != nil {
		_ = s.Stop()
		return nil, err
	}
	return s, nil
}

// listenFirst binds the serving address (a free port when none was given) before anything
// starts, so that a port in use fails the start at once with the bind error alone, before
// the storage etcd starts and stops again (its clients' failed handshakes logged on the way);
// the server serves on the returned listener, which the caller closes should the start fail
// before the server runs.
func (o *Options) listenFirst() (net.Listener, error) {
	ss := o.RecommendedOptions.SecureServing
	if ss.Listener != nil {
		return ss.Listener, nil
	}
	addr := net.JoinHostPort(ss.BindAddress.String(), strconv.Itoa(ss.BindPort))
	l, _, err := genericoptions.CreateListener(ss.BindNetwork, addr, net.ListenConfig{})
	if err != nil {
		return nil, fmt.Errorf("failed to create listener: %w", err)
	}
	ss.Listener = l
	return l, nil
}

// prepareStandalone completes and validates the standalone options and creates the data
// directory; it returns the directory's absolute path.
func (o *Options) prepareStandalone() (string, error) {
	o.Standalone.Enabled = true
	if err := o.completeStandalone(); err != nil {
		return "", err
	}
	if errs := o.validateStandalone(); len(errs) > 0 {
		return "", errors.Join(errs...)
	}
	dataDir, err := filepath.Abs(o.Standalone.DataDir)
	if err != nil {
		return "", err
	}
	if err := durable.MkdirAll(dataDir, 0o700); err != nil {
		return "", fmt.Errorf("creating data directory: %w", err)
	}
	return dataDir, nil
}

// newStandaloneServer builds the server that stores in etcd and trusts creds, sets the URL
// and admin configuration of s, writes the admin kubeconfig, and returns the function that
// runs the server.
func (o *Options) newStandaloneServer(s *Standalone, etcd *embedetcd.Etcd, creds *standaloneCreds) (func(context.Context) error, error) {
	// The URL names the address asked for, and the port bound when none was asked for.
	bindIP := o.RecommendedOptions.SecureServing.BindAddress
	config, err := o.standaloneConfig(etcd, creds)
	if err != nil {
		return nil, err
	}
	port := o.RecommendedOptions.SecureServing.BindPort
	s.URL = "https://" + net.JoinHostPort(bindIP.String(), strconv.Itoa(port))
	s.AdminConfig = &rest.Config{
		Host: s.URL,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   creds.ca.CertPEM,
			CertData: creds.admin.CertPEM,
			KeyData:  creds.admin.KeyPEM,
		},
	}
	if err := writeKubeconfig(s.KubeconfigPath, s.AdminConfig); err != nil {
		return nil, err
	}

	server, err := config.Complete().New()
	if err != nil {
		return nil, err
	}
	return server.GenericAPIServer.PrepareRun().RunWithContext, nil
}

// serve runs the server with run until it stops, or until the embedded etcd fails (then it
// stops the server); it then closes etcd, keeps why the server stopped and closes s.done.
func (s *Standalone) serve(ctx context.Context, run func(context.Context) error, etcd *embedetcd.Etcd) {
	defer close(s.done)
	runErr := make(chan error, 1)
	go func() { runErr <- run(ctx) }()
	select {
	case err := <-runErr:
		s.err = err
	case err := <-etcd.Err():
		s.err = fmt.Errorf("embedded etcd failed: %w", err)
		s.cancel()
		<-runErr
	}
	etcd.Close()
}

// standaloneCreds is the PKI of the standalone mode.
type standaloneCreds struct {
	ca      *pki.CA
	serving *pki.KeyPair
	admin   *pki.KeyPair
	dir     string
	// etcd is the storage etcd's PKI, of a CA of its own.
	etcd *storageEtcdTLS
}

// standalonePKI loads or creates the CA, the serving certificate and the admin client
// certificate under dir, and the storage etcd's PKI. The serving and admin certificates are
// issued again when they do not fit (the serving one does not cover bindIP) or two thirds
// of their lifetime passed; the kubeconfig is written from the admin one at every start.
func standalonePKI(dir string, bindIP net.IP) (*standaloneCreds, error) {
	ca, err := pki.LoadOrCreateCA(dir, "ca", "etcdaas-standalone-ca")
	if err != nil {
		return nil, fmt.Errorf("loading the standalone CA: %w", err)
	}
	servingReq := pki.Request{
		CommonName: "localhost",
		DNSNames:   []string{"localhost"},
		IPs:        []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback},
		Usage:      pki.ServerUsage,
	}
	if bindIP != nil && !bindIP.Equal(net.ParseIP("127.0.0.1")) && !bindIP.Equal(net.IPv6loopback) {
		servingReq.IPs = append(servingReq.IPs, bindIP)
	}
	serving, err := ca.LoadOrReissue(dir, "serving", servingReq)
	if err != nil {
		return nil, fmt.Errorf("loading the serving certificate: %w", err)
	}
	if !covers(serving.CertPEM, bindIP) {
		if serving, err = ca.Issue(servingReq); err != nil {
			return nil, err
		}
		if err := serving.Write(dir, "serving"); err != nil {
			return nil, err
		}
	}
	admin, err := ca.LoadOrReissue(dir, "admin", pki.Request{
		CommonName:   StandaloneAdminUser,
		Organization: []string{StandaloneAdminGroup},
		Usage:        pki.ClientUsage,
	})
	if err != nil {
		return nil, fmt.Errorf("loading the admin certificate: %w", err)
	}
	etcd, err := storageEtcdPKI(dir)
	if err != nil {
		return nil, err
	}
	return &standaloneCreds{ca: ca, serving: serving, admin: admin, dir: dir, etcd: etcd}, nil
}

// covers reports whether the certificate in certPEM is valid for ip.
func covers(certPEM []byte, ip net.IP) bool {
	certs, err := certutil.ParseCertsPEM(certPEM)
	if err != nil || len(certs) == 0 {
		return false
	}
	return certs[0].VerifyHostname(ip.String()) == nil
}

// standaloneConfig is the server configuration of the standalone mode: storage in the
// embedded etcd, client certificates from the standalone CA, system:masters authorized, no
// core API, no admission plugins that need one, no priority and fairness.
func (o *Options) standaloneConfig(etcd *embedetcd.Etcd, creds *standaloneCreds) (*apiserver.Config, error) {
	if err := o.standaloneRecommendedOptions(etcd, creds); err != nil {
		return nil, err
	}
	c, err := o.genericConfig()
	if err != nil {
		return nil, err
	}
	if err := o.RecommendedOptions.ApplyTo(c); err != nil {
		return nil, err
	}
	if err := standaloneAuthentication(c, creds); err != nil {
		return nil, err
	}
	c.Authorization.Authorizer, err = standaloneAuthorizer()
	if err != nil {
		return nil, err
	}
	extra, err := o.standaloneExtraConfig()
	if err != nil {
		return nil, err
	}
	return &apiserver.Config{GenericConfig: c, ExtraConfig: extra}, nil
}

// standaloneRecommendedOptions points the generic options at the embedded etcd (with the
// etcd client certificate of creds) and the serving certificate of creds, listens (listenFirst) unless StartStandalone did, and turns off
// what needs a kube-apiserver (admission, delegated authentication and authorization, the
// garbage collector's finalizers).
func (o *Options) standaloneRecommendedOptions(etcd *embedetcd.Etcd, creds *standaloneCreds) error {
	ro := o.RecommendedOptions
	// The storage backend connects with the API server's etcd client certificate.
	storage := &ro.Etcd.StorageConfig.Transport
	storage.ServerList = []string{etcdEndpoint(etcd)}
	storage.CertFile, storage.KeyFile = creds.etcd.Client.CertFile, creds.etcd.Client.KeyFile
	storage.TrustedCAFile = creds.etcd.Client.TrustedCAFile
	ro.SecureServing.ServerCert.CertKey.CertFile = filepath.Join(creds.dir, "serving.crt")
	ro.SecureServing.ServerCert.CertKey.KeyFile = filepath.Join(creds.dir, "serving.key")
	if ro.SecureServing.Listener == nil {
		if _, err := o.listenFirst(); err != nil {
			return err
		}
	}
	ro.Authentication = nil
	ro.Authorization = nil
	ro.CoreAPI = nil
	ro.Admission = nil
	ro.Features.EnablePriorityAndFairness = false
	// No garbage collector runs: the store must not add the foregroundDeletion and orphan
	// finalizers that only a garbage collector removes, or a foreground or orphan delete would
	// leave the instance terminating forever (kube-apiserver's --enable-garbage-collector=false).
	ro.Etcd.EnableGarbageCollection = false
	return nil
}

// standaloneAuthentication authenticates c's clients by a certificate of the standalone CA,
// and anyone on the public paths.
func standaloneAuthentication(c *genericapiserver.RecommendedConfig, creds *standaloneCreds) error {
	clientCA, err := dynamiccertificates.NewStaticCAContent("etcdaas-standalone-ca", creds.ca.CertPEM)
	if err != nil {
		return err
	}
	if err := c.Authentication.ApplyClientCert(clientCA, c.SecureServing); err != nil {
		return err
	}
	// Anonymous only for the health and version endpoints, and only without a credential: a
	// certificate that does not verify is refused on every path, as kube-apiserver refuses a
	// bad credential rather than take its bearer for anonymous (union.NewFailOnError).
	authn := union.NewFailOnError(
		x509request.NewDynamic(clientCA.VerifyOptions, x509request.CommonNameUserConversion),
		anonymous.NewAuthenticator(anonymousPaths()),
	)
	// Every request of a client presents its certificate chain: verify it once.
	c.Authentication.Authenticator, err = certcache.NewClientCert(certcache.ClientCertConfig{CA: clientCA}, authn)
	return err
}

// standaloneExtraConfig is the etcdaas part of the standalone configuration: the local
// backend's members reached from the data directory, local backups, and the in-process
// controller when it is asked for.
func (o *Options) standaloneExtraConfig() (apiserver.ExtraConfig, error) {
	// The backup subresource reaches the local backend's members from its state on disk,
	// whether the controller runs here or in another process on the same data directory.
	dataDir, err := filepath.Abs(o.Standalone.DataDir)
	if err != nil {
		return apiserver.ExtraConfig{}, err
	}
	maxRestore, err := o.maxRestoreBytes()
	if err != nil {
		return apiserver.ExtraConfig{}, err
	}
	backupDir, err := o.standaloneBackupDir(dataDir)
	if err != nil {
		return apiserver.ExtraConfig{}, err
	}
	hooks := o.Standalone.PostStartHooks
	// Without the in-process controller another controller (and backend) runs the
	// instances, so every version the API allows is accepted.
	var versions etcdinstance.VersionPolicy
	if o.Standalone.Controller {
		versions = etcdinstance.VersionPolicy{Supported: []string{local.EmbeddedVersion(), local.EmbeddedRelease()}, Reason: "standalone, local backend", InProcess: true}
		hooks = append(hooks, PostStartHook{Name: "start-etcdaas-controller", Run: func(ctx context.Context, config *rest.Config) error {
			_, err := controller.StartLocal(ctx, config, local.Options{Dir: dataDir, MemberRepairGracePeriod: repairGrace(o.Standalone.MemberRepairGracePeriod)}, backupDir)
			return err
		}})
	}
	return apiserver.ExtraConfig{
		PostStartHooks:  wrapHooks(hooks),
		ServeEvents:     true,
		BackupDialer:    local.Dialer{Dir: dataDir},
		WatchBufferSize: o.WatchBufferSize,
		Restore:         etcdinstance.RestoreOptions{Stager: local.Stager{Dir: dataDir}, MaxBytes: maxRestore},
		BackupResolver:  &backup.Resolver{LocalRoot: backupDir, Credentials: backup.EnvCredentials{}},
		Versions:        versions,
	}, nil
}

// publicPaths are served to anyone, as kube-apiserver's system:public-info-viewer does.
var publicPaths = []string{"/healthz", "/livez", "/readyz", "/version", "/livez/*", "/readyz/*", "/healthz/*"}

func anonymousPaths() []apiserverapi.AnonymousAuthCondition {
	out := make([]apiserverapi.AnonymousAuthCondition, 0, len(publicPaths))
	for _, p := range publicPaths {
		out = append(out, apiserverapi.AnonymousAuthCondition{Path: p})
	}
	return out
}

// standaloneAuthorizer allows the public paths to anyone and everything to system:masters.
func standaloneAuthorizer() (authorizer.Authorizer, error) {
	public, err := path.NewAuthorizer(publicPaths)
	if err != nil {
		return nil, err
	}
	return authzunion.New(
		authzunion.NamedAuthorizer{AuthorizerName: "public-paths", Authorizer: public},
		authzunion.NamedAuthorizer{AuthorizerName: "system-masters", Authorizer: authorizerfactory.NewPrivilegedGroups(StandaloneAdminGroup)},
	)
}

// wrapHooks adapts PostStartHooks to the generic server's post-start hooks.
func wrapHooks(hooks []PostStartHook) map[string]genericapiserver.PostStartHookFunc {
	out := make(map[string]genericapiserver.PostStartHookFunc, len(hooks))
	for _, h := range hooks {
		run := h.Run
		out[h.Name] = func(hookCtx genericapiserver.PostStartHookContext) error {
			return run(hookCtx, rest.CopyConfig(hookCtx.LoopbackClientConfig))
		}
	}
	return out
}

// writeKubeconfig writes a kubeconfig for config (client certificate and CA inline), mode
// 0600, replacing the old one whole (durable.WriteFile): a kubectl reading it meanwhile, or
// a crash, never sees half a file.
func writeKubeconfig(path string, config *rest.Config) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters[standaloneContext] = &clientcmdapi.Cluster{
		Server:                   config.Host,
		CertificateAuthorityData: config.CAData,
	}
	kc.AuthInfos[StandaloneAdminUser] = &clientcmdapi.AuthInfo{
		ClientCertificateData: config.CertData,
		ClientKeyData:         config.KeyData,
	}
	kc.Contexts[standaloneContext] = &clientcmdapi.Context{
		Cluster:   standaloneContext,
		AuthInfo:  StandaloneAdminUser,
		Namespace: "default",
	}
	kc.CurrentContext = standaloneContext
	data, err := clientcmd.Write(*kc)
	if err != nil {
		return err
	}
	return durable.WriteFile(path, data, 0o600)
}

// waitReady polls /readyz until it answers 200, the server stops, or the timeout passes.
func waitReady(ctx context.Context, s *Standalone) error {
	client, err := rest.HTTPClientFor(s.AdminConfig)
	if err != nil {
		return err
	}
	client.Timeout = 5 * time.Second
	deadline := time.Now().Add(readyTimeout)
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/readyz", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		select {
		case <-s.Done():
			if s.Err() != nil {
				return fmt.Errorf("server stopped before it was ready: %w", s.Err())
			}
			return errors.New("server stopped before it was ready")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			klog.Errorf("standalone server not ready: %s", last)
			return fmt.Errorf("server not ready within %s: %s", readyTimeout, last)
		}
	}
}
