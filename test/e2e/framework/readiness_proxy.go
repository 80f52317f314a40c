package framework

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// ReadinessProxy stands in for a Service's ready endpoints. kube-apiserver reaches
// etcdaas-apiserver through an ExternalName Service, which has no endpoints and so no
// readiness gating: it would send requests to a server that listens but is not ready yet
// (before its request-header authenticator has loaded, requests come out anonymous). The
// proxy accepts connections on the APIService's port and forwards them to the server only
// while the server's /readyz answers 200, as a ClusterIP Service with endpoints would.
type ReadinessProxy struct {
	listener net.Listener
	target   string
	ready    atomic.Bool
	client   *http.Client
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// StartReadinessProxy listens on listenAddr and forwards to target (host:port) while
// https://target/readyz, verified with caPEM, is OK.
func StartReadinessProxy(listenAddr, target string, caPEM []byte) (*ReadinessProxy, error) {
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return nil, err
	}
	return ServeReadinessProxy(ln, target, caPEM), nil
}

// ServeReadinessProxy is StartReadinessProxy on a listener the caller opened (held from the
// moment its port was chosen, so that no other process on the machine can take it).
func ServeReadinessProxy(ln net.Listener, target string, caPEM []byte) *ReadinessProxy {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	ctx, cancel := context.WithCancel(context.Background())
	p := &ReadinessProxy{
		listener: ln,
		target:   target,
		cancel:   cancel,
		client: &http.Client{
			Timeout:   2 * time.Second,
			Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}, DisableKeepAlives: true},
		},
	}
	p.wg.Add(2)
	go p.probe(ctx)
	go p.serve()
	return p
}

// Ready reports whether the proxy currently forwards.
func (p *ReadinessProxy) Ready() bool { return p.ready.Load() }

// Close stops accepting and probing.
func (p *ReadinessProxy) Close() {
	p.cancel()
	p.listener.Close()
	p.wg.Wait()
}

// failureThreshold is how many failed probes in a row make a ready server unready, as a
// readinessProbe's failureThreshold does: one slow answer on a loaded machine is not an
// outage.
const failureThreshold = 3

func (p *ReadinessProxy) probe(ctx context.Context) {
	defer p.wg.Done()
	failures := 0
	for {
		ok := false
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+p.target+"/readyz", nil)
		if resp, err := p.client.Do(req); err == nil {
			ok = resp.StatusCode == http.StatusOK
			resp.Body.Close()
		}
		if ok {
			failures = 0
			p.ready.Store(true)
		} else if failures++; failures >= failureThreshold {
			p.ready.Store(false)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (p *ReadinessProxy) serve() {
	defer p.wg.Done()
	for {
		conn, err := p.listener.Accept()
		if err != nil {
			return
		}
		if !p.ready.Load() {
			conn.Close() // no ready endpoint
			continue
		}
		go p.forward(conn)
	}
}

func (p *ReadinessProxy) forward(conn net.Conn) {
	defer conn.Close()
	upstream, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	defer upstream.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(upstream, conn); done <- struct{}{} }()
	go func() { _, _ = io.Copy(conn, upstream); done <- struct{}{} }()
	<-done
}
