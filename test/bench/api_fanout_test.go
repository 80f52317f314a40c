package bench

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/test/fanout"
)

// The watch fan-out scenario of BenchmarkAPI: s.watchers watches on one namespace through one
// client, then s.fanoutObjects creates there by fanoutCreators clients; through
// kube-apiserver, directly, and on the CRD without conversion (kube-apiserver's watch cache).
const (
	fanoutComplete = "watch fan-out: watchers with every event"
	fanoutDelivery = "watch fan-out: burst delivered"
	watchersOpened = "watchers opened"
	fanoutCreators = 8
)

// fanOuts runs the fan-out scenario s.repetitions times on etcdaas through kube-apiserver,
// etcdaas directly and the CRD, in a rotating order, each time in a fresh namespace. It
// returns, per subject, the watchers each server closed as unresponsive in each repetition.
func (e *apiEnv) fanOuts(ctx context.Context, s apiSettings, m measurements) (map[string][]float64, error) {
	subjects := e.targets[:3] // via the aggregator, direct, the CRD
	forced := map[string][]float64{}
	for rep := range s.repetitions {
		for i := range subjects {
			t := subjects[(i+rep)%len(subjects)]
			namespace := fmt.Sprintf("fan-%s-r%d", t.prefix, rep)
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
			if _, err := e.cluster.Kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
				return nil, err
			}
			gvr := schema.GroupVersionResource{Group: t.group, Version: v1beta1.SchemeGroupVersion.Version, Resource: "etcdinstances"}
			// The server that watches: etcdaas-apiserver for both etcdaas targets.
			metrics := e.targets[1].config
			if t.group != fanout.Resource.Group {
				metrics = t.config
			}
			before, err := fanout.TerminatedWatchersOf(ctx, metrics, gvr.GroupResource())
			if err != nil {
				return nil, err
			}
			res, err := fanout.Run(ctx, t.config, t.config, namespace, fanout.Scenario{
				Watchers: s.watchers, Objects: s.fanoutObjects, Creators: fanoutCreators, Deadline: s.deadline, Resource: gvr,
			})
			if err != nil {
				return nil, fmt.Errorf("%s: watch fan-out: %w", t.name, err)
			}
			after, err := fanout.TerminatedWatchersOf(ctx, metrics, gvr.GroupResource())
			if err != nil {
				return nil, err
			}
			forced[t.name] = append(forced[t.name], after-before)
			m.add(fanoutComplete, "", t.name, float64(res.Complete))
			m.add(watchersOpened, "", t.name, float64(res.Watchers))
			m.add(fanoutDelivery, "", t.name, res.DeliveryTime.Seconds())
		}
	}
	return forced, nil
}

// forcedCloses renders the forced closes per repetition of each subject for the report.
func forcedCloses(forced map[string][]float64, subjects []target) string {
	var parts []string
	for _, t := range subjects {
		parts = append(parts, fmt.Sprintf("%s %v", t.name, forced[t.name]))
	}
	return strings.Join(parts, "; ")
}
