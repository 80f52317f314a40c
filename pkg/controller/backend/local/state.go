package local

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.etcd.io/etcd/client/pkg/v3/transport"

	"github.com/etcdaas/etcdaas/pkg/durable"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
	"github.com/etcdaas/etcdaas/pkg/loopback"
)

// Member phases recorded in the instance state.
const (
	// phaseJoining is recorded before the member is added to the cluster: it has an ordinal
	// and ports but maybe no ID yet.
	phaseJoining = "joining"
	// phaseLearner is a member added as learner, not yet promoted.
	phaseLearner = "learner"
	// phaseVoting is a voting member.
	phaseVoting = "voting"
	// phaseRemoving is recorded before the member is removed from the cluster.
	phaseRemoving = "removing"
)

const stateFile = "state.json"

// instanceState is what the backend records on disk about one instance, so that any
// backend on the same directory (such as one in a restarted controller) resumes.
type instanceState struct {
	// UID is the ETCDInstance's UID; a new object with the same name starts from scratch.
	UID string `json:"uid"`
	// ClusterToken is the initial cluster token, unique per instance.
	ClusterToken string `json:"clusterToken"`
	// TLS is true when members serve TLS with the instance's PKI.
	TLS bool `json:"tls"`
	// NextOrdinal is the ordinal of the next member: ordinals (and so member names and data
	// directories) are never reused.
	NextOrdinal int `json:"nextOrdinal"`
	// Members are the members in ordinal order.
	Members []memberState `json:"members"`
	// Restore is the restore from a snapshot under way, nil when there is none.
	Restore *restoreState `json:"restore,omitempty"`
	// LastRestore is the ID of the last restore carried out: a request of that ID still in the
	// spool (the process stopped before removing it) is not carried out again.
	LastRestore string `json:"lastRestore,omitempty"`
	// Recovery is a recovery from quorum loss under way, nil when there is none.
	Recovery *recoveryState `json:"recovery,omitempty"`
	// LastRecovery is the ID of the recover request whose recovery ended last: that request,
	// still recorded on the instance, is carried out already, not refused.
	LastRecovery string `json:"lastRecovery,omitempty"`
	// Replacement is the replacement of an unhealthy member under way, nil when there is
	// none: recorded before the member is removed, cleared once its successor votes.
	Replacement *replacementState `json:"replacement,omitempty"`
}

// replacementState is the replacement of an unhealthy voting member by a new one.
type replacementState struct {
	// Old is the member replaced; New is the member that replaces it.
	Old string `json:"old"`
	New string `json:"new"`
	// Why says why Old is replaced.
	Why string `json:"why"`
}

// recoveryState is a recovery from quorum loss: recorded before anything is stopped, so that
// a restarted backend finishes it.
type recoveryState struct {
	// Survivor is the member the cluster is rebuilt from: its database, restored as a new
	// one-member cluster.
	Survivor string `json:"survivor"`
	// Discard are the other members, whose data is deleted.
	Discard []string `json:"discard,omitempty"`
	// Request is the ID of the recover request carried out (backend.RecoverRequest.ID).
	Request string `json:"request,omitempty"`
	// ID identifies this recovery: it names the seed that rebuilds the survivor.
	ID string `json:"id,omitempty"`
	// RevisionBump raises the rebuilt cluster's revision, whose older revisions are marked
	// compacted: the lost members may have been ahead of the survivor.
	RevisionBump uint64 `json:"revisionBump,omitempty"`
	// Rebuilt is set once the survivor's data directory holds the new cluster.
	Rebuilt bool `json:"rebuilt,omitempty"`
}

// votingMembers returns a state holding only the members keep selects, each marked voting,
// for talking to (or observing) exactly those members.
func (st *instanceState) votingMembers(keep func(memberState) bool) *instanceState {
	out := &instanceState{TLS: st.TLS}
	for _, m := range st.Members {
		if keep(m) {
			m.Phase = phaseVoting
			out.Members = append(out.Members, m)
		}
	}
	return out
}

// memberState is one member's record.
type memberState struct {
	Name       string `json:"name"`
	Ordinal    int    `json:"ordinal"`
	ID         string `json:"id,omitempty"`
	PeerPort   int    `json:"peerPort"`
	ClientPort int    `json:"clientPort"`
	Phase      string `json:"phase"`
	// ClusterState is "new" for the first member, "existing" for members that join.
	ClusterState string `json:"clusterState"`
	// InitialCluster is the initial-cluster flag the member first started with.
	InitialCluster string `json:"initialCluster,omitempty"`
	// Started is true once the member has started: from then on it has data, and starting
	// it without (a lost data directory) would rejoin the cluster with nothing it promised.
	// Voting members have started.
	Started bool `json:"started,omitempty"`
}

// hasData reports whether the member must have a data directory to start from.
func (m *memberState) hasData() bool { return m.Started || m.Phase == phaseVoting }

// move records new ports for m. A member that never started (a learner added just before the
// controller stopped) joins with its initial cluster, whose entry for it must name its new
// peer URL: etcd refuses to start a joining member whose peer URL is not the cluster's one for
// it, and readvertise tells the cluster the new one. A member with data restarts from it, and
// its initial cluster no longer matters.
func (m *memberState) move(tlsOn bool, peerPort, clientPort int) {
	old := m.Name + "=" + m.peerURL(tlsOn)
	m.PeerPort, m.ClientPort = peerPort, clientPort
	if m.hasData() {
		return
	}
	entries := strings.Split(m.InitialCluster, ",")
	for i, e := range entries {
		if e == old {
			entries[i] = m.Name + "=" + m.peerURL(tlsOn)
		}
	}
	m.InitialCluster = strings.Join(entries, ",")
}

func (m *memberState) scheme(tlsOn bool) string {
	if tlsOn {
		return "https"
	}
	return "http"
}

func (m *memberState) peerURL(tlsOn bool) string {
	return m.scheme(tlsOn) + "://" + loopback.HostPort(m.PeerPort)
}

func (m *memberState) clientURL(tlsOn bool) string {
	return m.scheme(tlsOn) + "://" + loopback.HostPort(m.ClientPort)
}

func (m *memberState) id() uint64 {
	if m.ID == "" {
		return 0
	}
	id, err := etcdcluster.ParseID(m.ID)
	if err != nil {
		return 0
	}
	return id
}

// instanceDir returns DIR/instances/<namespace>/<name>, refusing names that are not a single
// safe path element.
func instanceDir(root, namespace, name string) (string, error) {
	for _, part := range []string{namespace, name} {
		if part == "" || part == "." || part == ".." || filepath.Base(part) != part || part != filepath.Clean(part) {
			return "", fmt.Errorf("invalid namespace or name %q", part)
		}
	}
	return filepath.Join(root, "instances", namespace, name), nil
}

func loadState(dir string) (*instanceState, error) {
	data, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return nil, err
	}
	st := &instanceState{}
	if err := json.Unmarshal(data, st); err != nil {
		return nil, fmt.Errorf("reading %s: %w", filepath.Join(dir, stateFile), err)
	}
	return st, nil
}

// save writes the state so that a crash or a power loss leaves the old state or the new
// one, and never forgets the new one once save returned (durable.WriteFile), nor the
// instance directory its first save creates (durable.MkdirAll).
func (st *instanceState) save(dir string) error {
	if err := durable.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return durable.WriteFile(filepath.Join(dir, stateFile), data, 0o600)
}

func (st *instanceState) member(name string) *memberState {
	for i := range st.Members {
		if st.Members[i].Name == name {
			return &st.Members[i]
		}
	}
	return nil
}

func (st *instanceState) removeMember(name string) {
	out := st.Members[:0]
	for _, m := range st.Members {
		if m.Name != name {
			out = append(out, m)
		}
	}
	st.Members = out
}

// PKI file names under DIR/instances/<namespace>/<name>/pki.
const (
	pkiDir     = "pki"
	caName     = "ca"
	serverName = "server"
	peerName   = "peer"
	clientName = "client"
)

// Dialer gives the API server (or anyone on the same machine) access to the members of local
// instances, from the state the backend keeps on disk.
type Dialer struct {
	// Dir is the backend's data directory.
	Dir string
}

// Access implements etcdcluster.Dialer: the client URLs of the instance's voting members
// and, for TLS instances, a client certificate signed by the instance's CA.
func (d Dialer) Access(_ context.Context, namespace, name string) (*etcdcluster.Access, error) {
	dir, err := instanceDir(d.Dir, namespace, name)
	if err != nil {
		return nil, err
	}
	st, err := loadState(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: instance %s/%s has not been deployed", etcdcluster.ErrNoMembers, namespace, name)
	}
	if err != nil {
		return nil, err
	}
	if !st.deployed() {
		// Ports are recorded before the first member starts (and stay recorded when it never
		// does, such as when spec.restoreFrom fails): nothing listens there to wait for.
		return nil, fmt.Errorf("%w: instance %s/%s has not been deployed yet", etcdcluster.ErrNoMembers, namespace, name)
	}
	return accessFor(dir, st, false)
}

// deployed reports whether a member of st ever joined a cluster (it has an ID).
func (st *instanceState) deployed() bool {
	return slices.ContainsFunc(st.Members, func(m memberState) bool { return m.ID != "" })
}

// accessFor builds the Access for the members of st; with learners, learners are included.
func accessFor(dir string, st *instanceState, learners bool) (*etcdcluster.Access, error) {
	access := &etcdcluster.Access{}
	for _, m := range st.Members {
		if m.Phase == phaseVoting || (learners && m.Phase == phaseLearner) {
			access.Endpoints = append(access.Endpoints, m.clientURL(st.TLS))
		}
	}
	if len(access.Endpoints) == 0 {
		return nil, fmt.Errorf("%w: no voting member is recorded", etcdcluster.ErrNoMembers)
	}
	if st.TLS {
		cfg, err := clientTLS(dir)
		if err != nil {
			return nil, err
		}
		access.TLS = cfg
	}
	return access, nil
}

func clientTLS(dir string) (*tls.Config, error) {
	p := filepath.Join(dir, pkiDir)
	info := transport.TLSInfo{
		CertFile:      filepath.Join(p, clientName+".crt"),
		KeyFile:       filepath.Join(p, clientName+".key"),
		TrustedCAFile: filepath.Join(p, caName+".crt"),
	}
	cfg, err := info.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading the instance's client certificate: %w", err)
	}
	return cfg, nil
}
