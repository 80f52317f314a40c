package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	versioned "github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned"
	"github.com/etcdaas/etcdaas/test/e2e/framework"
	"github.com/etcdaas/etcdaas/test/fault"
)

const (
	// faultWriters is how many writers run during each fault, half in each version.
	faultWriters = 16
	// writerTimeout bounds each writer request, so that a request the fault swallowed
	// comes back as a timeout.
	writerTimeout = 5 * time.Second
	// storageStop is how long the storage etcd stays frozen.
	storageStop = 10 * time.Second
)

// TestFaults breaks etcdaas behind a real kube-apiserver while clients use it. It runs
// without etcdaas-controller first (the writers' objects would each get members):
// Kill9APIServer and StorageEtcdStopped; then with it: Kill9Controller.
func TestFaults(t *testing.T) {
	c := framework.StartClusterWithoutController(t)
	t.Run("Kill9APIServer", func(t *testing.T) { testKill9APIServer(t, c) })
	t.Run("StorageEtcdStopped", func(t *testing.T) { testStorageEtcdStopped(t, c) })

	// The writers' objects go before a controller would run members for them.
	cs := etcdaasClient(t, c)
	for _, ns := range []string{kill9Namespace, storageNamespace} {
		if err := cs.EtcdaasV1beta1().ETCDInstances(ns).DeleteCollection(t.Context(), metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.StartEtcdaasController(); err != nil {
		t.Fatal(err)
	}
	t.Run("Kill9Controller", func(t *testing.T) { testKill9Controller(t, c) })
}

// writerClientset is the admin's clientset through kube-apiserver, without client-side rate
// limiting and with writerTimeout per request.
func writerClientset(t *testing.T, c *framework.Cluster) *versioned.Clientset {
	t.Helper()
	cfg := rest.CopyConfig(c.AdminConfig)
	cfg.QPS, cfg.Burst, cfg.Timeout = -1, 0, writerTimeout
	cs, err := versioned.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// waitServed waits until both versions of ns's ETCDInstances are listed through the
// aggregator again, and returns when that happened.
func waitServed(t *testing.T, c *framework.Cluster, cs versioned.Interface, ns string) time.Time {
	t.Helper()
	err := framework.Poll(t.Context(), 50*time.Millisecond, 2*time.Minute, "etcdinstances served through the aggregator", func(ctx context.Context) (bool, error) {
		if _, err := cs.EtcdaasV1beta1().ETCDInstances(ns).List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
			return false, err
		}
		_, err := cs.EtcdaasV1alpha1().ETCDInstances(ns).List(ctx, metav1.ListOptions{Limit: 1})
		return err == nil, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return time.Now()
}

// checkWriters fails the test for every unclean error the writers saw and for too few
// acknowledged objects, and checks every acknowledged write through cs.
func checkWriters(t *testing.T, cs versioned.Interface, ns string, w *fault.Writers) (present, deleted int) {
	t.Helper()
	if unclean := w.Tally.Unclean(); len(unclean) > 0 {
		t.Errorf("%d errors were not clean failures (connection errors, timeouts, 429, 5xx), first: %s", len(unclean), unclean[0])
	}
	present, deleted = fault.Verify(t.Context(), t, cs, ns, w.Acknowledged())
	if present+deleted < faultWriters {
		t.Errorf("only %d objects acknowledged", present+deleted)
	}
	return present, deleted
}

const kill9Namespace = "e2e-fault-kill9"

// testKill9APIServer kills etcdaas-apiserver with SIGKILL while 16 writers create, update
// and delete through the aggregator, restarts it, and kills it again once they stop: every
// acknowledged write is there afterwards, and while it was away the writers saw only 5xx
// from the aggregator, connection errors and timeouts.
func testKill9APIServer(t *testing.T, c *framework.Cluster) {
	createNamespace(t, c, kill9Namespace)
	cs := writerClientset(t, c)
	w := fault.StartWriters(cs, kill9Namespace, faultWriters, 4*time.Minute)
	time.Sleep(3 * time.Second)

	killedAt := time.Now()
	c.Process("etcdaas-apiserver").Kill()
	time.Sleep(time.Second) // the writers find it gone
	restartedAt := time.Now()
	if err := c.StartEtcdaasAPIServer(); err != nil {
		t.Fatal(err)
	}
	served := waitServed(t, c, cs, kill9Namespace)
	time.Sleep(3 * time.Second)
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}

	// What was acknowledged survives a kill with no load and no grace either.
	c.Process("etcdaas-apiserver").Kill()
	if err := c.StartEtcdaasAPIServer(); err != nil {
		t.Fatal(err)
	}
	waitServed(t, c, cs, kill9Namespace)

	present, deleted := checkWriters(t, cs, kill9Namespace, w)
	first, _ := w.Tally.Window()
	if first.Before(killedAt) {
		t.Errorf("errors began %s before the kill", killedAt.Sub(first))
	}
	t.Logf("acknowledged %d objects (%d present, %d deleted), all found after 2 kill -9 through the aggregator; "+
		"served again %s after the kill (%s after the restart); %s",
		present+deleted, present, deleted, served.Sub(killedAt).Round(time.Millisecond), served.Sub(restartedAt).Round(time.Millisecond), w.Tally)
}

const storageNamespace = "e2e-fault-storage"

// testStorageEtcdStopped freezes the etcd that stores etcdaas's objects (SIGSTOP) for 10s
// while 16 writers run: the writers see only clean errors and only while it is frozen,
// /readyz of etcdaas-apiserver fails naming the etcd check, and everything recovers without
// restarting anything.
func testStorageEtcdStopped(t *testing.T, c *framework.Cluster) {
	createNamespace(t, c, storageNamespace)
	cs := writerClientset(t, c)
	server := c.Process("etcdaas-apiserver")
	storage := c.Process("etcd-etcdaas")
	readyz := readyzClient(t, c)
	if code, body := readyz.get(t, "/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz before the fault: %d %s", code, body)
	}

	w := fault.StartWriters(cs, storageNamespace, faultWriters, 4*time.Minute)
	time.Sleep(3 * time.Second)
	if n := w.Tally.Total(); n > 0 {
		t.Fatalf("%d errors before the fault: %s", n, w.Tally)
	}
	stoppedAt, resume := freeze(t, storage)
	unreadyAfter, etcdCheck := waitUnreadyNamingEtcd(t, readyz, stoppedAt)
	time.Sleep(time.Until(stoppedAt.Add(storageStop)))
	resumedAt := time.Now()
	resume()

	err := framework.Poll(t.Context(), 50*time.Millisecond, time.Minute, "/readyz to pass again", func(ctx context.Context) (bool, error) {
		code, _ := readyz.get(t, "/readyz")
		return code == http.StatusOK, nil
	})
	readyAgain := time.Since(resumedAt)
	if err != nil {
		t.Error(err)
	}
	acksAtResume := w.Tally.Acks()
	time.Sleep(3 * time.Second)
	acksAfter := w.Tally.Acks() - acksAtResume
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}

	if exited, err := server.Exited(); exited || c.Process("etcdaas-apiserver") != server {
		t.Fatalf("etcdaas-apiserver did not ride out the fault: exited=%v %v", exited, err)
	}
	if acksAfter == 0 {
		t.Errorf("no write acknowledged in the 3s after etcd resumed: %s", w.Tally)
	}
	present, deleted := checkWriters(t, cs, storageNamespace, w)
	first, last := w.Tally.Window()
	if first.Before(stoppedAt) {
		t.Errorf("errors began %s before etcd was stopped", stoppedAt.Sub(first))
	}
	// A request sent just before the resume may still run into its timeout.
	if limit := resumedAt.Add(writerTimeout + time.Second); last.After(limit) {
		t.Errorf("errors went on %s after etcd resumed", last.Sub(resumedAt).Round(time.Millisecond))
	}
	t.Logf("storage etcd stopped %s: /readyz failed %s after the stop (%q), passed %s after the resume; "+
		"acknowledged %d objects (%d present, %d deleted), all found; %d writes acknowledged in the 3s after the resume; "+
		"last error %s after the resume; %s",
		storageStop, unreadyAfter.Round(time.Millisecond), strings.TrimSpace(etcdCheck), readyAgain.Round(time.Millisecond),
		present+deleted, present, deleted, acksAfter, last.Sub(resumedAt).Round(time.Millisecond), w.Tally)
}

// freeze stops p (SIGSTOP) and returns when, and the function that resumes it (SIGCONT) once,
// which also runs at the test's cleanup.
func freeze(t *testing.T, p *framework.Process) (time.Time, func()) {
	t.Helper()
	stoppedAt := time.Now()
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			if err := p.Signal(syscall.SIGCONT); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(resume)
	return stoppedAt, resume
}

// waitUnreadyNamingEtcd waits for /readyz to fail naming an etcd check as the cause: "etcd"
// (the storage's health) or "etcd-readiness" (its readiness), whichever notices first; that
// check's own endpoint must fail too. It returns how long after stoppedAt /readyz failed, and
// the check with its answer.
func waitUnreadyNamingEtcd(t *testing.T, readyz directClient, stoppedAt time.Time) (time.Duration, string) {
	t.Helper()
	var verbose, etcdCheck string
	err := framework.Poll(t.Context(), 100*time.Millisecond, storageStop-time.Second, "/readyz to fail naming etcd", func(ctx context.Context) (bool, error) {
		code, body := readyz.get(t, "/readyz?verbose")
		verbose = body
		return code == http.StatusInternalServerError && failedEtcdCheck(body) != "", nil
	})
	unreadyAfter := time.Since(stoppedAt)
	if err != nil {
		t.Errorf("%v; last answer:\n%s", err, verbose)
	} else {
		check := failedEtcdCheck(verbose)
		if code, body := readyz.get(t, "/readyz/"+check); code != http.StatusInternalServerError {
			t.Errorf("/readyz/%s does not fail: %d %q", check, code, body)
		} else {
			etcdCheck = check + ": " + strings.TrimSpace(body)
		}
	}
	return unreadyAfter, etcdCheck
}

// directClient calls etcdaas-apiserver's own port, not through the aggregator, as the
// admin: /readyz is open to anyone, its individual checks (/readyz/etcd) are not.
type directClient struct {
	base   string
	client *http.Client
}

func readyzClient(t *testing.T, c *framework.Cluster) directClient {
	t.Helper()
	cfg := rest.CopyConfig(c.AdminConfig)
	cfg.Host = "https://" + framework.HostPort(c.EtcdaasPort)
	cfg.TLSClientConfig.CAFile, cfg.TLSClientConfig.CAData = "", c.PKI.ServingCA.CertPEM
	cfg.TLSClientConfig.ServerName = "localhost"
	cfg.Timeout = 5 * time.Second
	client, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return directClient{base: cfg.Host, client: client}
}

// get returns the status code and body of GET path, or 0 and the error.
func (d directClient) get(t *testing.T, path string) (int, string) {
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, d.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, fmt.Sprint(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// failedEtcdCheck returns the name of the first failing etcd check ("etcd", "etcd-readiness")
// in a /readyz?verbose answer, or "".
func failedEtcdCheck(verbose string) string {
	for _, line := range strings.Split(verbose, "\n") {
		name, ok := strings.CutPrefix(strings.TrimSpace(line), "[-]")
		if !ok {
			continue
		}
		name, _, _ = strings.Cut(name, " ")
		if name == "etcd" || strings.HasPrefix(name, "etcd-") {
			return name
		}
	}
	return ""
}
