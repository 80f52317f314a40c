package metrics

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"k8s.io/apiserver/pkg/server/healthz"
	"k8s.io/component-base/metrics/legacyregistry"
)

// Serve serves, from l until ctx ends, the global registry on /metrics (the controller's
// metrics, the workqueue's, Go's and the process's) and the health endpoints kubelet probes
// and people ask, as Kubernetes components serve them (?verbose, ?exclude=CHECK, one path per
// check): /livez (the process answers), /readyz (it answers and every check in ready passes)
// and /healthz (both).
func Serve(ctx context.Context, l net.Listener, ready ...healthz.HealthChecker) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", legacyregistry.Handler())
	healthz.InstallLivezHandler(mux, healthz.PingHealthz)
	checks := append([]healthz.HealthChecker{healthz.PingHealthz}, ready...)
	healthz.InstallReadyzHandler(mux, checks...)
	healthz.InstallHandler(mux, checks...)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
