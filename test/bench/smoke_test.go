package bench

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestAPIHarness runs every scenario of BenchmarkAPI once per repetition at a tiny size
// (make test): the control plane, both CRDs and the conversion webhook answer, every figure
// and every peer is measured, the watchers of the fan-out get every event, the backup
// streams at least what the instance holds, and the report is written; then
// BenchmarkAggregatorHop's scenario on the same control plane.
func TestAPIHarness(t *testing.T) {
	env := startAPIEnv(t, true)
	s := apiSettings{objects: 4, repetitions: 3, gets: 3, lists: 2, watchers: 5, fanoutObjects: 4, backupBytes: 1 << 20, deadline: time.Minute}
	r := env.run(t, s)
	if len(r.Comparisons) != 2*2*4+1+2*2*2*4+5+7 {
		t.Fatalf("%d comparisons, want every create and read scenario in both versions against 4 peers, RSS, "+
			"the fan-out's 5 and the backup's 7", len(r.Comparisons))
	}
	checkAPIComparisons(t, r.Comparisons, s)
	dir := t.TempDir()
	md, err := r.write(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range []string{
		`| create, 32 clients | v1alpha1 | etcdaas via kube-apiserver |`,
		`| watch fan-out: watchers with every event |  | etcdaas via kube-apiserver |`,
		`| backup stream |  | etcdaas via kube-apiserver |`,
	} {
		if !strings.Contains(md, row) {
			t.Errorf("the markdown lacks the row %s:\n%s", row, md)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, r.Name+".json")); err != nil { // api.json, api-json.json with JSON clients
		t.Error(err)
	}

	checkAggregatorHop(t, env, s, dir)
}

// checkAPIComparisons checks every figure of the API run with settings s: sampled each
// repetition, positive where it is a time, every watcher of the fan-out complete, the backup
// against a stream of at least what was written.
func checkAPIComparisons(t *testing.T, comparisons []comparison, s apiSettings) {
	t.Helper()
	for _, c := range comparisons {
		if c.Scenario == fanoutComplete && (c.Ratio != 1 || c.Of.Min != float64(s.watchers)) {
			t.Errorf("%s: %s: %+v of %+v watchers got every event", c.Subject, c.Scenario, c.Of, c.PeerOf)
		}
		if c.Peer == snapshotSize && c.PeerOf.Min < 1 {
			t.Errorf("%s: %s against a stream of %+v MiB, want at least the 1 MiB written", c.Subject, c.Scenario, c.PeerOf)
		}
		if c.Scenario == rssScenario || c.Scenario == backupRSSScenario || c.Scenario == backupKubeRSS || c.Scenario == backupCPU {
			// A few objects or a 1 MiB stream need not grow the RSS at all, nor take a clock tick of CPU.
			if len(c.Of.Samples) != s.repetitions || len(c.PeerOf.Samples) != s.repetitions {
				t.Errorf("%s, %s: figures %+v and %+v", c.Scenario, c.Subject, c.Of, c.PeerOf)
			}
			continue
		}
		if len(c.Of.Samples) != s.repetitions || len(c.PeerOf.Samples) != s.repetitions || c.Of.Min <= 0 || c.PeerOf.Min <= 0 || c.Ratio <= 0 {
			t.Errorf("%s %s, %s against %s: figures %+v and %+v, ratio %v", c.Scenario, c.Version, c.Subject, c.Peer, c.Of, c.PeerOf, c.Ratio)
		}
	}
}

// checkAggregatorHop runs BenchmarkAggregatorHop's scenarios on env's control plane with
// settings s and checks them, that a wrong answer of the do-nothing backend fails the run, and
// the markdown written in dir.
func checkAggregatorHop(t *testing.T, env *apiEnv, s apiSettings, dir string) {
	// BenchmarkAggregatorHop's scenarios on the same control plane: the do-nothing backend
	// answers GETs, creates, LISTs (each list decoded holds every object) and the backup stream
	// (exactly its length) through kube-apiserver, and every target is measured.
	hop, err := env.startAggregatorHop(t.Context(), s)
	if err != nil {
		t.Fatal(err)
	}
	hr, err := hop.run(t.Context(), s)
	if err != nil {
		t.Fatal(err)
	}
	if len(hr.Comparisons) != 4+2*4+2*4+5 {
		t.Fatalf("%d aggregator-hop comparisons, want the GET's 4, 4 per create and LIST scenario, the stream's 5", len(hr.Comparisons))
	}
	for _, c := range hr.Comparisons {
		if len(c.Of.Samples) != s.repetitions || len(c.PeerOf.Samples) != s.repetitions || c.Ratio <= 0 {
			t.Errorf("aggregator hop, %s %s against %s: figures %+v and %+v, ratio %v", c.Scenario, c.Subject, c.Peer, c.Of, c.PeerOf, c.Ratio)
		}
	}
	// A wrong answer of the do-nothing backend fails the run: a list that is not the objects,
	// and a stream of another length than the one asked for (repetition 1 streams it first).
	if err := hop.backend.setList(hop.backend.object); err != nil {
		t.Fatal(err)
	}
	if err := hop.lists(t.Context(), s, 0, measurements{}); err == nil || !strings.Contains(err.Error(), nullBackend) {
		t.Errorf("a LIST answering one object instead of %d: err %v, want the do-nothing backend's", s.objects, err)
	}
	longer := s
	longer.backupBytes++
	if err := hop.streams(t.Context(), longer, 1, measurements{}); err == nil || !strings.Contains(err.Error(), nullBackend) {
		t.Errorf("a stream one byte short: err %v, want the do-nothing backend's", err)
	}
	md, err := hr.write(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range []string{
		`| create, 32 clients | v1beta1 | do-nothing backend via kube-apiserver |`,
		`| LIST rv="0" (watch cache) | v1alpha1 | do-nothing backend via kube-apiserver |`,
		`| backup stream |  | do-nothing backend direct |`,
	} {
		if !strings.Contains(md, row) {
			t.Errorf("the aggregator-hop markdown lacks the row %s:\n%s", row, md)
		}
	}
}

func TestSummarizeAndCompare(t *testing.T) {
	f := summarize([]float64{5, 1, 3, 9})
	if f.Median != 4 || f.Min != 1 || f.Max != 9 {
		t.Fatalf("summarize = %+v, want median 4 of an even count, min 1, max 9", f)
	}
	peer := summarize([]float64{2, 2, 2})
	c := compare("create", "v1beta1", "objects/s", "a", f, "b", peer, &goal{AtLeast: true, Value: 1.5})
	if c.Ratio != 2 || c.Verdict != "met" {
		t.Fatalf("ratio %v verdict %q, want 2 and met", c.Ratio, c.Verdict)
	}
	c = compare("GET", "v1beta1", "ms", "a", f, "b", peer, &goal{AtLeast: false, Value: 1.5})
	if c.Verdict != "not met" {
		t.Fatalf("verdict %q, want not met for 2 ≤ 1.5", c.Verdict)
	}
	if c = compare("GET", "", "ms", "a", f, "b", figure{}, nil); c.Verdict != "no peer figure" || c.Ratio != 0 {
		t.Fatalf("a missing peer gave ratio %v verdict %q", c.Ratio, c.Verdict)
	}
}

func TestPerSecondRunsEachOperationOnceAndStopsAtTheFirstError(t *testing.T) {
	var seen [100]atomic.Int32
	rate, err := perSecond(t.Context(), time.Minute, 8, len(seen), func(_ context.Context, i int) error {
		seen[i].Add(1)
		return nil
	})
	if err != nil || rate <= 0 {
		t.Fatalf("rate %v, err %v", rate, err)
	}
	for i := range seen {
		if n := seen[i].Load(); n != 1 {
			t.Fatalf("operation %d ran %d times", i, n)
		}
	}
	// Four clients take operations 0 to 3; 3 fails while the others wait: nothing more runs.
	boom := errors.New("boom")
	var ran atomic.Int32
	_, err = perSecond(t.Context(), time.Minute, 4, 1000, func(ctx context.Context, i int) error {
		ran.Add(1)
		if i == 3 {
			return boom
		}
		<-ctx.Done()
		return ctx.Err()
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the failed operation's error", err)
	}
	if n := ran.Load(); n != 4 {
		t.Fatalf("%d operations ran, want the 4 started before the error", n)
	}
}
