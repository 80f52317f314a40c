package embedetcd

import (
	"context"
	"sync"

	"go.etcd.io/etcd/server/v3/embed"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Etcd is an embedded member whose client API can be closed before its server stops.
//
// etcd's own HardStop closes the member's database while its gRPC servers still accept
// requests (they only stop in Close), and a request served in between reads a closed
// database: etcd 3.7's Maintenance.Status then dereferences a nil transaction and the whole
// process exits. HardStop here first refuses new requests and waits for the ones in flight.
type Etcd struct {
	*embed.Etcd
	gate    *rpcGate
	failure *failure
}

// HardStop stops the member at once, as a crash would (no leadership transfer), after its
// client API stopped taking requests and the requests in flight returned. It waits for them
// without a bound: a defragmentation of a large database may take minutes, and stopping under
// it would crash the process (callers that must not wait run it in the background). Close must
// still be called to release the listeners.
func (e *Etcd) HardStop() {
	e.gate.closeAndDrain()
	e.Server.HardStop()
}

// rpcGate lets requests through until it is closed; it counts unary requests in flight.
// Streams (watches, lease keep-alives, snapshots) are only refused once closed: they can last
// forever, and etcd ends them itself when it stops.
type rpcGate struct {
	mu       sync.RWMutex
	closed   bool
	inFlight sync.WaitGroup
}

var errStopped = status.Error(codes.Unavailable, "etcdserver: server stopped")

func (g *rpcGate) enter(counted bool) bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.closed {
		return false
	}
	if counted {
		g.inFlight.Add(1)
	}
	return true
}

func (g *rpcGate) closeAndDrain() {
	g.close()
	g.inFlight.Wait()
}

// close refuses every request from now on, without waiting for those in flight.
func (g *rpcGate) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

func (g *rpcGate) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !g.enter(true) {
		return nil, errStopped
	}
	defer g.inFlight.Done()
	return handler(ctx, req)
}

func (g *rpcGate) stream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !g.enter(false) {
		return errStopped
	}
	return handler(srv, ss)
}

// serverOptions install the gate in front of every gRPC service of the member.
func (g *rpcGate) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(g.unary), grpc.ChainStreamInterceptor(g.stream)}
}
