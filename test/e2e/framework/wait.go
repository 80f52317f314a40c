package framework

import (
	"context"
	"fmt"
	"time"

	"github.com/etcdaas/etcdaas/pkg/loopback"
)

// FreePorts returns n distinct free ports on 127.0.0.1.
func FreePorts(n int) ([]int, error) { return loopback.FreePorts(n) }

// HostPort joins 127.0.0.1 and port.
func HostPort(port int) string { return loopback.HostPort(port) }

// Poll calls cond every interval until it returns true or timeout passes. An error from cond
// means "not yet" (the thing waited for may still be starting); the timeout error carries
// the last one.
func Poll(ctx context.Context, interval, timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		ok, err := cond(ctx)
		if ok && err == nil {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("timed out after %s waiting for %s: %w", timeout, what, last)
			}
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
		case <-time.After(interval):
		}
	}
}
