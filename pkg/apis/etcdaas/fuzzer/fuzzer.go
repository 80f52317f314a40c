// Package fuzzer fills etcdaas.dev objects with random but meaningful values for round-trip
// tests.
package fuzzer

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/resource"
	runtimeserializer "k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/randfill"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
)

var phases = []etcdaas.Phase{"", etcdaas.PhasePending, etcdaas.PhaseDeploying, etcdaas.PhaseScaling,
	etcdaas.PhaseRunning, etcdaas.PhaseFailed, etcdaas.PhaseDeleting, etcdaas.PhaseRestoring,
	etcdaas.PhaseRecovering}

// Funcs returns the fuzz functions of the etcdaas.dev API group.
var Funcs = func(codecs runtimeserializer.CodecFactory) []interface{} {
	return []interface{}{
		func(q *resource.Quantity, c randfill.Continue) {
			// Quantities keep only their canonical form across encodings.
			*q = *resource.NewQuantity(c.Int63n(1<<40), resource.BinarySI)
		},
		func(s *etcdaas.ETCDInstanceSpec, c randfill.Continue) {
			c.FillNoCustom(s)
			// Never empty: v1beta1 decoding would default it.
			s.Version = fmt.Sprintf("3.%d", c.Intn(10))
		},
		func(p *etcdaas.Phase, c randfill.Continue) {
			if c.Intn(10) == 0 {
				*p = etcdaas.Phase(c.String(0)) // phases a future version may add
				return
			}
			*p = phases[c.Intn(len(phases))]
		},
	}
}
