package embedetcd

import (
	"context"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcdaas/etcdaas/pkg/loopback"
)

// TestHardStopUnderStatusRequests stops members while clients keep asking them for their
// status, as the controller does every sync. Without the gate, a request served between
// etcd's HardStop and Close reads a closed database and the whole process crashes.
func TestHardStopUnderStatusRequests(t *testing.T) {
	dir := t.TempDir()
	for round := range 3 {
		ports, err := loopback.FreePorts(2)
		if err != nil {
			t.Fatal(err)
		}
		name := "m" + strconv.Itoa(round)
		m := Member{Name: name, Dir: filepath.Join(dir, name),
			PeerURL: "http://" + loopback.HostPort(ports[0]), ClientURL: "http://" + loopback.HostPort(ports[1]),
			LogOutput: filepath.Join(dir, name+".log")}
		e, err := Start(m)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := WaitReady(ctx, e); err != nil {
			t.Fatal(err)
		}
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.ClientURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var served atomic.Int64
		for range 8 {
			wg.Go(func() {
				for i := 0; ctx.Err() == nil && i < 100000; i++ {
					rctx, rcancel := context.WithTimeout(ctx, time.Second)
					_, err := cli.Status(rctx, m.ClientURL)
					rcancel()
					if err != nil {
						if i == 0 {
							t.Logf("first status request: %v", err)
						}
						return
					}
					served.Add(1)
				}
			})
		}
		// Stop while requests are being served.
		for deadline := time.Now().Add(20 * time.Second); served.Load() < 50 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		if served.Load() == 0 {
			t.Fatalf("round %d: no status request was served", round)
		}
		e.HardStop()
		rctx, rcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		_, err = cli.Status(rctx, m.ClientURL)
		rcancel()
		if err == nil {
			t.Errorf("round %d: a stopped member still answered a status request", round)
		}
		wg.Wait()
		e.Close()
		_ = cli.Close()
		cancel()
	}
}
