package integration

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	versioned "github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned"
	"github.com/etcdaas/etcdaas/test/integration/framework"
	"github.com/etcdaas/etcdaas/test/testenv"
)

// shared is the server most tests use, each in its own namespace; restart tests start their own.
var shared *framework.Server

// parallelTests is how many tests marked t.Parallel run at once unless -test.parallel is
// given. Those tests mostly wait (for cron minutes, grace periods, members to catch up), each
// on a server and members of its own, so more of them than go test's default (GOMAXPROCS, 2
// on the development machine) share the cores well; the tests that measure memory or
// throughput are not parallel and run alone before them.
const parallelTests = 4

func TestMain(m *testing.M) {
	flag.Parse()
	if err := testenv.DefaultParallel(parallelTests); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "etcdaas-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// The server runs until Stop; its start-up is bounded by the standalone ready timeout.
	shared, err = framework.Start(context.Background(), framework.Options{DataDir: dir})
	if err != nil {
		fmt.Fprintf(os.Stderr, "starting etcdaas-apiserver: %v\n", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	if err := shared.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "stopping etcdaas-apiserver: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// namespace returns a namespace name unique to the test. Namespaces need not exist: the
// standalone mode has no core API and no namespace lifecycle admission.
func namespace(t *testing.T) string {
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 40 {
		name = name[:40]
	}
	return strings.Trim(name, "-") + "-" + rand.String(5)
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// warningRecorder collects the warnings the server sends.
type warningRecorder struct {
	mu       sync.Mutex
	warnings []string
}

// HandleWarningHeader implements rest.WarningHandler.
func (w *warningRecorder) HandleWarningHeader(code int, agent string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.warnings = append(w.warnings, text)
}

func (w *warningRecorder) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.warnings
	w.warnings = nil
	return out
}

func clients(t *testing.T) (*versioned.Clientset, dynamic.Interface) {
	t.Helper()
	cfg := shared.Config()
	cs, err := versioned.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs, dyn
}

func clientsWithWarnings(t *testing.T) (*versioned.Clientset, *warningRecorder) {
	t.Helper()
	cfg := shared.Config()
	rec := &warningRecorder{}
	cfg.WarningHandler = rec
	cs, err := versioned.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs, rec
}

// rawResponse is an HTTP response read in full.
type rawResponse struct {
	code   int
	body   []byte
	header http.Header
}

// do sends a raw request as the admin; headers are name/value pairs.
func do(t *testing.T, method, path string, body []byte, headers ...string) rawResponse {
	t.Helper()
	cfg := shared.Config()
	client, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var reader io.Reader
	if body != nil {
		reader = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(testContext(t), method, cfg.Host+path, reader)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return rawResponse{code: resp.StatusCode, body: data, header: resp.Header}
}
