package integration

import (
	"context"
	"testing"
	"time"

	"github.com/etcdaas/etcdaas/test/fanout"
)

// fanoutDeadline bounds TestWatchFanOut from the first watch to the last event; on two busy
// cores the 200 000 deliveries take 40 s to 90 s, mostly the client decoding them.
const fanoutDeadline = 5 * time.Minute

// fanoutCreateRate caps TestWatchFanOut's creates per second, so that the burst takes about
// four seconds. Uncapped, on two cores shared with other test packages, the creators and the
// in-process client left the server's own goroutines so little CPU that the watch cache
// closed watchers in one run of three to eight, with the per-watch queues far from full. The
// uncapped burst is measured by make bench (BenchmarkWatchFanOut*, BenchmarkAPI's fan-out).
const fanoutCreateRate = 50

// TestWatchFanOut opens 1000 watches on one namespace through one client, reaching the
// standalone server directly, then creates 200 objects there from 8 clients (at most
// fanoutCreateRate per second): every watch must receive every ADDED event and stay open, and
// the server must close none of its watchers for being too slow (an informer would re-list
// after such a close; a thousand at once is a thundering herd). The client decodes every event, so most of the run's time is the
// client's; the run is bounded by fanoutDeadline.
func TestWatchFanOut(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), fanoutDeadline+time.Minute)
	defer cancel()
	before, err := fanout.TerminatedWatchers(ctx, shared.Config())
	if err != nil {
		t.Fatal(err)
	}
	res, err := fanout.Run(ctx, shared.Config(), shared.Config(), namespace(t), fanout.Scenario{
		Watchers:   1000,
		Objects:    200,
		Creators:   8,
		CreateRate: fanoutCreateRate,
		Deadline:   fanoutDeadline,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res)
	after, err := fanout.TerminatedWatchers(ctx, shared.Config())
	if err != nil {
		t.Fatal(err)
	}
	if res.Complete != res.Watchers || res.Closed != 0 {
		t.Errorf("%d of %d watchers received all 200 events and %d were closed early; want all, none closed", res.Complete, res.Watchers, res.Closed)
	}
	if forced := after - before; forced != 0 {
		t.Errorf("the server force-closed %v etcdinstances watchers as unresponsive; want 0", forced)
	}
}
