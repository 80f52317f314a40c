package bench

import (
	"context"
	"fmt"
	"io"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned/scheme"
)

// creates measures, from 1 and from 32 clients, the objects created per second in etcdaas
// and in the do-nothing backend through kube-apiserver, in the CRD and in etcdaas direct:
// BenchmarkAPI's create scenario, in hopVersion, each target in a new namespace.
func (h *aggregatorHop) creates(ctx context.Context, s apiSettings, rep int, m measurements) error {
	for _, clients := range []int{1, 32} {
		for _, t := range rotated([]target{h.agg, h.null.viaAggregator, h.crd, h.dir}, rep) {
			rate, err := h.env.create(ctx, s, t, hopVersion, clients, rep, createCount(s, clients))
			if err != nil {
				return fmt.Errorf("%s: create with %d clients: %w", t.name, clients, err)
			}
			m.add(createScenario(clients), hopVersion, t.name, rate)
		}
	}
	return nil
}

// lists measures the LIST in hopListVersion of the s.objects objects the 32 clients created
// in this repetition in etcdaas (through kube-apiserver and direct) and in the CRD, and the
// do-nothing backend's answer of the same (etcdaas's bytes, taken once), each with every
// resourceVersion of the read scenarios.
// Each list is decoded once, untimed: it must hold s.objects objects.
func (h *aggregatorHop) lists(ctx context.Context, s apiSettings, rep int, m measurements) error {
	if h.backend.list.Load() == nil {
		body, err := rawGET(ctx, h.agg, hopListVersion, namespaceOf(h.agg, hopVersion, 32, rep), "")
		if err != nil {
			return fmt.Errorf("%s: the LIST the do-nothing backend answers: %w", h.agg.name, err)
		}
		if err := h.backend.setList(body); err != nil {
			return err
		}
	}
	for _, t := range rotated([]target{h.agg, h.null.viaAggregator, h.crd, h.dir}, rep) {
		namespace, version := namespaceOf(t, hopVersion, 32, rep), versionOf(t, hopListVersion)
		n, err := listed(ctx, t, version, namespace)
		if err == nil && n != s.objects {
			err = fmt.Errorf("listed %d objects, want %d", n, s.objects)
		}
		if err != nil {
			return fmt.Errorf("%s: LIST in %s: %w", t.name, hopListVersion, err)
		}
		for _, sc := range h.env.readScenarios() {
			list, err := medianMillis(ctx, s.deadline, s.lists, func(ctx context.Context) error {
				return t.read(ctx, version, namespace, "", sc.rv)
			})
			if err != nil {
				return fmt.Errorf("%s: %s in %s: %w", t.name, sc.list, hopListVersion, err)
			}
			m.add(sc.list, hopListVersion, t.name, list)
		}
	}
	return nil
}

// listed is the number of objects a LIST of namespace through t holds, decoded: by the
// dynamic client, or, for the do-nothing backend, whose answers are etcdaas's objects, with
// etcdaas's scheme from t's media type.
func listed(ctx context.Context, t target, version, namespace string) (int, error) {
	if t.group != nullGroup {
		l, err := t.resource(version).Namespace(namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return 0, err
		}
		return len(l.Items), nil
	}
	body, err := rawGET(ctx, t, version, namespace, "")
	if err != nil {
		return 0, err
	}
	obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(body, nil, nil)
	if err != nil {
		return 0, err
	}
	return apimeta.LenList(obj), nil
}

// streams measures the backup stream of etcdaas and of the do-nothing backend, each through
// kube-apiserver and direct, and a clientv3 snapshot of the backup instance's member, in MiB/s. The do-nothing backend must stream exactly s.backupBytes, the
// others at least as much (the member holds that much data).
func (h *aggregatorHop) streams(ctx context.Context, s apiSettings, rep int, m measurements) error {
	type stream struct {
		subject string
		open    func(ctx context.Context) (io.ReadCloser, error)
		exact   bool
	}
	streams := []stream{
		{viaAggregator, h.agg.backupIn(hopVersion), false},
		{nullBackend, h.null.viaAggregator.backupIn(nullVersion), true},
		{nullDirect, h.null.direct.backupIn(nullVersion), true},
		{direct, h.dir.backupIn(hopVersion), false},
		{snapshotPeer, func(ctx context.Context) (io.ReadCloser, error) { return stockSnapshot(ctx, h.member) }, false},
	}
	for i := range streams {
		st := streams[(i+rep)%len(streams)]
		n, elapsed, err := drain(ctx, s.deadline, st.open)
		switch {
		case err != nil:
		case st.exact && n != s.backupBytes:
			err = fmt.Errorf("streamed %d bytes, want the %d it writes", n, s.backupBytes)
		case n < s.backupBytes:
			err = fmt.Errorf("streamed %d bytes, want at least the %d written", n, s.backupBytes)
		}
		if err != nil {
			return fmt.Errorf("%s: backup: %w", st.subject, err)
		}
		m.add(backupScenario, "", st.subject, float64(n)/(1<<20)/elapsed.Seconds())
	}
	return nil
}
