package install

import (
	"math/rand"
	"testing"

	"k8s.io/apimachinery/pkg/api/apitesting/fuzzer"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metafuzzer "k8s.io/apimachinery/pkg/apis/meta/fuzzer"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	runtimeserializer "k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/dump"
	"sigs.k8s.io/randfill"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	etcdaasfuzzer "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/fuzzer"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1alpha1"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
)

// crossVersionIterations is how many fuzzed objects each cross-version test converts.
const crossVersionIterations = 5000

var v1alpha1States = []v1alpha1.State{v1alpha1.StateNone, v1alpha1.StateDeploying, v1alpha1.StateRunning, v1alpha1.StateFailed}

func newScheme(t testing.TB) *runtime.Scheme {
	t.Helper()
	scheme := runtime.NewScheme()
	Install(scheme)
	return scheme
}

func newFiller(scheme *runtime.Scheme, seed int64) *randfill.Filler {
	funcs := fuzzer.MergeFuzzerFuncs(metafuzzer.Funcs, etcdaasfuzzer.Funcs, func(runtimeserializer.CodecFactory) []interface{} {
		return []interface{}{
			// v1alpha1's state is a closed enum; now and then a value from elsewhere.
			func(s *v1alpha1.State, c randfill.Continue) {
				if c.Intn(10) == 0 {
					*s = v1alpha1.State(c.String(0))
					return
				}
				*s = v1alpha1States[c.Intn(len(v1alpha1States))]
			},
		}
	})
	return fuzzer.FuzzerFor(funcs, rand.NewSource(seed), runtimeserializer.NewCodecFactory(scheme))
}

func convert(t *testing.T, scheme *runtime.Scheme, in, out runtime.Object) {
	t.Helper()
	if err := scheme.Convert(in, out, nil); err != nil {
		t.Fatalf("converting %T to %T: %v", in, out, err)
	}
}

// throughOtherVersion converts input to the hub, into via, back to the hub and into output:
// an object written in one version, read and written back by a client of the other. It fails
// the test when a conversion modifies its input.
func throughOtherVersion(t *testing.T, scheme *runtime.Scheme, input, via, output runtime.Object) {
	t.Helper()
	original := input.DeepCopyObject()
	var hub1, hub2 etcdaas.ETCDInstance
	convert(t, scheme, input, &hub1)
	convert(t, scheme, &hub1, via)
	convert(t, scheme, via, &hub2)
	convert(t, scheme, &hub2, output)
	if !apiequality.Semantic.DeepEqual(original, input) {
		t.Fatalf("conversion modified its input:\n%s", dump.Pretty(original))
	}
}

// TestV1beta1ThroughV1alpha1LosesNothing: v1beta1 -> internal -> v1alpha1 -> internal ->
// v1beta1 gives the input back, whatever v1alpha1 cannot express.
func TestV1beta1ThroughV1alpha1LosesNothing(t *testing.T) {
	scheme := newScheme(t)
	filler := newFiller(scheme, rand.Int63())
	for i := 0; i < crossVersionIterations; i++ {
		// A fuzzed hub object rendered in v1beta1 and defaulted is any object a v1beta1
		// client can hold.
		var hub etcdaas.ETCDInstance
		filler.Fill(&hub)
		var input v1beta1.ETCDInstance
		convert(t, scheme, &hub, &input)
		scheme.Default(&input)
		original := input.DeepCopy()

		var alpha v1alpha1.ETCDInstance
		var output v1beta1.ETCDInstance
		throughOtherVersion(t, scheme, &input, &alpha, &output)
		if !apiequality.Semantic.DeepEqual(original, &output) {
			t.Fatalf("iteration %d: v1beta1 -> v1alpha1 -> v1beta1 lost data\ninput:  %s\nalpha:  %s\noutput: %s",
				i, dump.Pretty(original), dump.Pretty(&alpha), dump.Pretty(&output))
		}
		if _, ok := output.Annotations[etcdaas.PreservedFieldsAnnotation]; ok {
			t.Fatalf("the preserved-fields annotation leaked into v1beta1: %v", output.Annotations)
		}
	}
}

// TestV1alpha1ThroughV1beta1LosesNothing: v1alpha1 -> internal -> v1beta1 -> internal ->
// v1alpha1 gives an old client's object back byte for byte, with no annotation added.
func TestV1alpha1ThroughV1beta1LosesNothing(t *testing.T) {
	scheme := newScheme(t)
	filler := newFiller(scheme, rand.Int63())
	for i := 0; i < crossVersionIterations; i++ {
		var input v1alpha1.ETCDInstance
		filler.Fill(&input)
		input.TypeMeta = metav1.TypeMeta{} // typed objects carry no kind
		delete(input.Annotations, etcdaas.PreservedFieldsAnnotation)
		scheme.Default(&input)
		original := input.DeepCopy()

		var beta v1beta1.ETCDInstance
		var output v1alpha1.ETCDInstance
		throughOtherVersion(t, scheme, &input, &beta, &output)

		if !apiequality.Semantic.DeepEqual(original, &output) {
			t.Fatalf("iteration %d: v1alpha1 -> v1beta1 -> v1alpha1 changed the object\ninput:  %s\nbeta:   %s\noutput: %s",
				i, dump.Pretty(original), dump.Pretty(&beta), dump.Pretty(&output))
		}
	}
}

// TestHubThroughBothVersionsLosesNothing: internal -> v1alpha1 -> internal and internal ->
// v1beta1 -> internal, for objects as the server holds them.
func TestHubThroughBothVersionsLosesNothing(t *testing.T) {
	scheme := newScheme(t)
	filler := newFiller(scheme, rand.Int63())
	for i := 0; i < crossVersionIterations; i++ {
		var hub etcdaas.ETCDInstance
		filler.Fill(&hub)
		for _, versioned := range []runtime.Object{&v1alpha1.ETCDInstance{}, &v1beta1.ETCDInstance{}} {
			var back etcdaas.ETCDInstance
			convert(t, scheme, &hub, versioned)
			convert(t, scheme, versioned, &back)
			if !apiequality.Semantic.DeepEqual(&hub, &back) {
				t.Fatalf("iteration %d: internal -> %T -> internal lost data\nin:  %s\nout: %s", i, versioned, dump.Pretty(&hub), dump.Pretty(&back))
			}
		}
	}
}

// TestAnUnreadableAnnotationIsKeptForValidation: a preserved-fields annotation the v1alpha1
// conversion cannot read stays on the internal object for validation to refuse, also through
// the round trip to v1beta1 and back that a mutating admission webhook's patch makes of the
// request's object (the v1beta1 conversion drops only an annotation that reads), and also when
// a v1beta1 client sends it. A readable one is still dropped from v1beta1.
func TestAnUnreadableAnnotationIsKeptForValidation(t *testing.T) {
	scheme := newScheme(t)
	const unreadable = `{"spec":{"bakup":{"schedule":"@daily"}}}`
	alpha := &v1alpha1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "db", Annotations: map[string]string{etcdaas.PreservedFieldsAnnotation: unreadable}}}
	var hub etcdaas.ETCDInstance
	if err := scheme.Convert(alpha, &hub, nil); err != nil {
		t.Fatal(err)
	}
	var beta v1beta1.ETCDInstance
	if err := scheme.Convert(&hub, &beta, nil); err != nil {
		t.Fatal(err)
	}
	var back etcdaas.ETCDInstance
	if err := scheme.Convert(&beta, &back, nil); err != nil {
		t.Fatal(err)
	}
	for what, annotations := range map[string]map[string]string{"from v1alpha1": hub.Annotations, "through v1beta1": back.Annotations} {
		if annotations[etcdaas.PreservedFieldsAnnotation] != unreadable || v1alpha1.PreservedFieldsError(annotations) == nil {
			t.Errorf("%s: annotations %v, want the unreadable annotation kept", what, annotations)
		}
	}
	readable := &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "db", Annotations: map[string]string{etcdaas.PreservedFieldsAnnotation: `{"spec":{"version":"3.6"}}`}}}
	var fromBeta etcdaas.ETCDInstance
	if err := scheme.Convert(readable, &fromBeta, nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := fromBeta.Annotations[etcdaas.PreservedFieldsAnnotation]; ok {
		t.Errorf("a readable annotation from v1beta1 reached the internal object: %v", fromBeta.Annotations)
	}
}
