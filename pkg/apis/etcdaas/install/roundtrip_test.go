package install

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/apitesting/roundtrip"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/fuzzer"
)

// TestRoundTripTypes fuzzes internal objects and checks internal -> each version -> JSON/YAML
// -> version -> internal gives the object back.
func TestRoundTripTypes(t *testing.T) {
	defer func(iters int) { *roundtrip.FuzzIters = iters }(*roundtrip.FuzzIters)
	*roundtrip.FuzzIters = 500
	roundtrip.RoundTripTestForAPIGroup(t, Install, fuzzer.Funcs)
}
