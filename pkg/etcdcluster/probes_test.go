package etcdcluster

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"

	"github.com/etcdaas/etcdaas/pkg/etcdtest"
)

// probe answers GET endpoint+path with its status code and body.
func probe(t *testing.T, endpoint, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(endpoint + path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// startLearner starts the member name, added as a learner at peer, joining the cluster whose
// initial cluster is initial; it returns a function stopping it (called again when the test
// ends) and its client URL.
func startLearner(t *testing.T, name string, peer url.URL, initial string) (func(), string) {
	t.Helper()
	client := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir, cfg.LogLevel = name, t.TempDir(), "error"
	cfg.LogOutputs = []string{filepath.Join(cfg.Dir, "etcd.log")}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.InitialCluster, cfg.ClusterState = initial, embed.ClusterStateFlagExisting
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := sync.OnceFunc(e.Close)
	t.Cleanup(stop)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("learner not ready within 30s")
	}
	return stop, client.String()
}

// TestReadinessProbeKeepsClientsOffALearner: a learner refuses what clients ask of a Service
// (writes, linearizable reads), so its readiness probe fails until it is promoted, while its
// liveness probe passes; a voting member stays ready when it loses quorum.
func TestReadinessProbeKeepsClientsOffALearner(t *testing.T) {
	ctx := context.Background()
	voter := etcdtest.Start(t, nil)
	cli, err := (&Access{Endpoints: []string{voter}}).New()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cli.Close() }()
	members, err := MemberList(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	peer := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	id, _, err := AddLearner(ctx, cli, peer.String())
	if err != nil {
		t.Fatal(err)
	}
	stopLearner, endpoint := startLearner(t, "l", peer, fmt.Sprintf("%s=%s,l=%s", members[0].Name, members[0].PeerURLs[0], peer.String()))

	lcli, err := (&Access{Endpoints: []string{endpoint}}).New()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lcli.Close() }()
	if _, err := lcli.Put(ctx, "k", "v"); err == nil || !strings.Contains(err.Error(), "learner") {
		t.Fatalf("a write to a learner: %v, want etcd's refusal", err)
	}
	if code, body := probe(t, endpoint, ReadinessPath); code != http.StatusServiceUnavailable || !strings.Contains(body, "non_learner") {
		t.Fatalf("readiness of a learner: %d %q, want 503 naming non_learner", code, body)
	}
	if code, body := probe(t, endpoint, LivenessPath); code != http.StatusOK {
		t.Fatalf("liveness of a learner: %d %q", code, body)
	}
	if code, body := probe(t, voter, ReadinessPath); code != http.StatusOK {
		t.Fatalf("readiness of the voting member: %d %q", code, body)
	}

	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := Promote(pctx, cli, id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the promoted member ready", func() bool {
		code, _ := probe(t, endpoint, ReadinessPath)
		return code == http.StatusOK
	})

	// Two voting members, one stopped: the other has no quorum but still serves local reads.
	stopLearner()
	waitFor(t, 30*time.Second, "the remaining member to lose its leader", func() bool {
		code, _ := probe(t, voter, "/readyz")
		return code == http.StatusServiceUnavailable
	})
	if code, body := probe(t, voter, ReadinessPath); code != http.StatusOK {
		t.Fatalf("readiness of a voting member without quorum: %d %q, want 200", code, body)
	}
}

// waitFor polls cond every 100ms until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
