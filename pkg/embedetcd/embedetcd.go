// Package embedetcd starts etcd members inside this process (go.etcd.io/etcd/server/v3/embed):
// the standalone server's storage and the local backend's members are both started here, so
// they are configured one way.
package embedetcd

import (
	"context"
	"fmt"
	"net/url"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
)

// Member is one embedded etcd member.
type Member struct {
	// Name is the member's name and Dir its data directory.
	Name, Dir string
	// PeerURL and ClientURL are where the member listens, and what it advertises.
	PeerURL, ClientURL string
	// InitialCluster (default: the member alone), ClusterState ("new", the default, or
	// "existing") and InitialClusterToken only matter when Dir holds no data yet: a member with
	// data restarts from it.
	InitialCluster, ClusterState, InitialClusterToken string
	// ClientTLS and PeerTLS, when set, serve clients and peers over TLS.
	ClientTLS, PeerTLS *transport.TLSInfo
	// SnapshotCount, SnapshotCatchUpEntries, QuotaBackendBytes and MaxLearners are etcd's
	// settings of the same names; zero keeps etcd's default.
	SnapshotCount, SnapshotCatchUpEntries uint64
	QuotaBackendBytes                     int64
	MaxLearners                           int
	// AutoCompactionMode and AutoCompactionRetention are etcd's --auto-compaction-mode and
	// --auto-compaction-retention; an empty retention keeps etcd's default (no
	// auto-compaction), an empty mode etcd's "periodic".
	AutoCompactionMode, AutoCompactionRetention string
	// LogLevel is etcd's log level (default "warn"); LogOutput is a file, or
	// embed.StdErrLogOutput (when empty). etcd logs expected events (such as a stopping
	// member's closed listeners) as errors, which is why callers give it a file of its own.
	LogLevel, LogOutput string
	// ContainFailures makes a failure etcd raises through its logger after the member started
	// (lg.Fatal, such as a database write failing on a full disk, or lg.Panic) end this
	// member only, reported by Etcd.Failed, instead of the whole process (see failure.go).
	ContainFailures bool
}

// Config returns the embed configuration that runs m.
func (m Member) Config() (*embed.Config, error) {
	peer, err := url.Parse(m.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("peer URL of member %s: %w", m.Name, err)
	}
	client, err := url.Parse(m.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("client URL of member %s: %w", m.Name, err)
	}
	cfg := embed.NewConfig()
	cfg.Name = m.Name
	cfg.Dir = m.Dir
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*peer}, []url.URL{*peer}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*client}, []url.URL{*client}
	cfg.InitialCluster = m.InitialCluster
	if cfg.InitialCluster == "" {
		cfg.InitialCluster = cfg.InitialClusterFromName(m.Name)
	}
	if m.ClusterState != "" {
		cfg.ClusterState = m.ClusterState
	}
	if m.InitialClusterToken != "" {
		cfg.InitialClusterToken = m.InitialClusterToken
	}
	if m.ClientTLS != nil {
		cfg.ClientTLSInfo = *m.ClientTLS
	}
	if m.PeerTLS != nil {
		cfg.PeerTLSInfo = *m.PeerTLS
	}
	if m.SnapshotCount != 0 {
		cfg.SnapshotCount = m.SnapshotCount
	}
	if m.SnapshotCatchUpEntries != 0 {
		cfg.SnapshotCatchUpEntries = m.SnapshotCatchUpEntries
	}
	if m.QuotaBackendBytes != 0 {
		cfg.QuotaBackendBytes = m.QuotaBackendBytes
	}
	if m.MaxLearners != 0 {
		cfg.MaxLearners = m.MaxLearners
	}
	if m.AutoCompactionMode != "" {
		cfg.AutoCompactionMode = m.AutoCompactionMode
	}
	if m.AutoCompactionRetention != "" {
		cfg.AutoCompactionRetention = m.AutoCompactionRetention
	}
	cfg.LogLevel = m.LogLevel
	if cfg.LogLevel == "" {
		cfg.LogLevel = "warn"
	}
	cfg.LogOutputs = []string{m.LogOutput}
	if m.LogOutput == "" {
		cfg.LogOutputs = []string{embed.StdErrLogOutput}
	}
	return cfg, nil
}

// Start starts m. It does not wait for the member to serve: members of one cluster restarted
// together need each other for quorum (see WaitReady). A panic or fatal error etcd raises while
// the member bootstraps is returned as an error wrapping a *BootstrapError; if etcd had opened
// the member's database, it stays open until the process exits, and a later Start of the member
// fails (see startEtcd).
func Start(m Member) (*Etcd, error) {
	cfg, err := m.Config()
	if err != nil {
		return nil, err
	}
	gate := &rpcGate{}
	cfg.GRPCAdditionalServerOptions = append(cfg.GRPCAdditionalServerOptions, gate.serverOptions()...)
	hooks := newMemberLogHooks(m.ContainFailures, cfg.Dir)
	e, err := startEtcd(m.Name, cfg, hooks)
	if err != nil {
		return nil, err
	}
	member := &Etcd{Etcd: e, gate: gate, failure: hooks.failure}
	go member.isolateOnFailure()
	return member, nil
}

// WaitReady waits until e serves clients, fails, or ctx ends.
func WaitReady(ctx context.Context, e *Etcd) error {
	select {
	case <-e.Server.ReadyNotify():
		return nil
	case err := <-e.Err():
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
