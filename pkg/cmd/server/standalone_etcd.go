package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"

	"go.etcd.io/etcd/client/pkg/v3/transport"

	"github.com/etcdaas/etcdaas/pkg/embedetcd"
	"github.com/etcdaas/etcdaas/pkg/loopback"
	"github.com/etcdaas/etcdaas/pkg/pki"
)

// The storage etcd's PKI, laid out under DataDir/pki as kubeadm lays out /etc/kubernetes/pki:
// a CA of its own in etcd/ with the member's server and peer certificates, and the API
// server's client certificate beside the API server's other files.
const (
	// StandaloneEtcdPKIDir is the storage etcd's directory under DataDir/pki.
	StandaloneEtcdPKIDir = "etcd"
	// StandaloneEtcdClientName is the API server's etcd client certificate and key,
	// DataDir/pki/apiserver-etcd-client.{crt,key}, signed by the storage etcd's CA.
	StandaloneEtcdClientName = "apiserver-etcd-client"

	etcdCAName         = "ca"
	etcdServerName     = "server"
	etcdPeerName       = "peer"
	etcdCACommonName   = "etcdaas-standalone-etcd-ca"
	etcdClientIdentity = "etcdaas-apiserver-etcd-client"
)

// storageEtcdTLS is how the storage etcd serves its clients and its peer, and how the API
// server connects to it: mutual TLS with certificates of the etcd CA only.
type storageEtcdTLS struct {
	// Server and Peer are the member's; both ask for a client certificate of the etcd CA.
	Server, Peer transport.TLSInfo
	// Client is the API server's client certificate and the CA that verifies the member.
	Client transport.TLSInfo
}

// storageEtcdPKI loads or creates the storage etcd's CA and certificates under pkiDir. The
// CA is not the standalone CA that authenticates the API server's clients (as kubeadm keeps
// etcd's CA apart from the cluster's): an etcd client certificate grants nothing on the API
// server, and the admin certificate (system:masters) cannot reach etcd past authorization,
// admission and validation. A data directory from before (no etcd certificates) gets them
// here; a certificate that its CA did not sign, or that expired, is issued again.
func storageEtcdPKI(pkiDir string) (*storageEtcdTLS, error) {
	dir := filepath.Join(pkiDir, StandaloneEtcdPKIDir)
	ca, err := pki.LoadOrCreateCA(dir, etcdCAName, etcdCACommonName)
	if err != nil {
		return nil, fmt.Errorf("loading the storage etcd's CA: %w", err)
	}
	member := pki.Request{
		CommonName: standaloneEtcdName,
		DNSNames:   []string{"localhost"},
		IPs:        []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback},
		// etcd's gRPC gateway connects to its own gRPC server with the server certificate.
		Usage: pki.ServerUsage | pki.ClientUsage,
	}
	issued := []struct {
		dir, name string
		req       pki.Request
	}{
		{dir, etcdServerName, member},
		{dir, etcdPeerName, member},
		{pkiDir, StandaloneEtcdClientName, pki.Request{CommonName: etcdClientIdentity, Usage: pki.ClientUsage}},
	}
	for _, c := range issued {
		if _, err := ca.LoadOrReissue(c.dir, c.name, c.req); err != nil {
			return nil, fmt.Errorf("loading the storage etcd's %s certificate: %w", c.name, err)
		}
	}
	caFile := filepath.Join(dir, etcdCAName+".crt")
	files := func(dir, name string) transport.TLSInfo {
		return transport.TLSInfo{
			CertFile: filepath.Join(dir, name+".crt"), KeyFile: filepath.Join(dir, name+".key"),
			TrustedCAFile: caFile, ClientCertAuth: true,
		}
	}
	t := &storageEtcdTLS{Server: files(dir, etcdServerName), Peer: files(dir, etcdPeerName), Client: files(pkiDir, StandaloneEtcdClientName)}
	t.Client.ClientCertAuth = false
	// The peer port admits the member's own certificate only, not the API server's, which has
	// the same CA (as the instances' members admit only their peer certificate).
	t.Peer.AllowedCNs = []string{standaloneEtcdName}
	return t, nil
}

// startEmbeddedEtcd starts a single-member etcd in dir on 127.0.0.1, serving clients and its
// peer with tlsInfo, and waits until it serves.
func startEmbeddedEtcd(dir string, clientPort, peerPort int, tlsInfo *storageEtcdTLS) (*embedetcd.Etcd, error) {
	if clientPort == 0 || peerPort == 0 {
		free, err := loopback.FreePorts(2)
		if err != nil {
			return nil, err
		}
		if clientPort == 0 {
			clientPort = free[0]
		}
		if peerPort == 0 {
			peerPort = free[1]
		}
	}
	m := embedetcd.Member{
		Name:      standaloneEtcdName,
		Dir:       dir,
		PeerURL:   "https://" + loopback.HostPort(peerPort),
		ClientURL: "https://" + loopback.HostPort(clientPort),
		ClientTLS: &tlsInfo.Server,
		PeerTLS:   &tlsInfo.Peer,
		// etcd logs expected shutdown noise at error level; keep its log next to its data.
		LogOutput: dir + ".log",
	}
	e, err := embedetcd.Start(m)
	if err != nil {
		return nil, fmt.Errorf("starting embedded etcd in %s: %w", dir, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := embedetcd.WaitReady(ctx, e); err != nil {
		e.Server.Stop()
		e.Close()
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("embedded etcd in %s was not ready within %s", dir, readyTimeout)
		}
		return nil, fmt.Errorf("embedded etcd in %s: %w", dir, err)
	}
	return e, nil
}

// etcdEndpoint is the client URL of the storage etcd e.
func etcdEndpoint(e *embedetcd.Etcd) string { return "https://" + e.Clients[0].Addr().String() }
