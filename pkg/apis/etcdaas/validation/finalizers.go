package validation

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// standardFinalizers are the finalizer names Kubernetes itself uses, which need no domain.
var standardFinalizers = sets.New(metav1.FinalizerOrphanDependents, metav1.FinalizerDeleteDependents, string(corev1.FinalizerKubernetes))

// FinalizerWarnings returns the warnings kube-apiserver gives for the finalizers of a custom
// resource, in its words: one for each finalizer of finalizers, not in old, whose name has no
// path (no "/"), unless Kubernetes uses it. A name that is not a qualified name at all is
// refused earlier, by the metadata validation every create and update goes through.
func FinalizerWarnings(finalizers, old []string) []string {
	path := field.NewPath("metadata", "finalizers")
	var warnings []string
	for _, name := range sets.List(sets.New(finalizers...).Delete(old...)) {
		if strings.Contains(name, "/") || standardFinalizers.Has(name) {
			continue
		}
		prefer := "prefer a domain-qualified finalizer name"
		if strings.Contains(name, ".") {
			prefer += " including a path (/)"
		}
		warnings = append(warnings, fmt.Sprintf("%s: %q: %s to avoid accidental conflicts with other finalizer writers", path, name, prefer))
	}
	return warnings
}
