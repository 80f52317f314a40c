package validation

import (
	"slices"
	"testing"
)

// TestFinalizerWarnings checks the warnings apiextensions-apiserver gives for a custom
// resource's finalizers, word for word: a name without a domain or without a path, once each,
// for the finalizers the request adds only.
func TestFinalizerWarnings(t *testing.T) {
	for _, c := range []struct {
		name     string
		new, old []string
		want     []string
	}{
		{"qualified", []string{"example.com/hold"}, nil, nil},
		{"standard", []string{"orphan", "foregroundDeletion", "kubernetes"}, nil, nil},
		{"no domain", []string{"hold"}, nil, []string{
			`metadata.finalizers: "hold": prefer a domain-qualified finalizer name to avoid accidental conflicts with other finalizer writers`,
		}},
		{"no path", []string{"hold.example.com"}, nil, []string{
			`metadata.finalizers: "hold.example.com": prefer a domain-qualified finalizer name including a path (/) to avoid accidental conflicts with other finalizer writers`,
		}},
		{"sorted, once each", []string{"b", "a", "b"}, nil, []string{
			`metadata.finalizers: "a": prefer a domain-qualified finalizer name to avoid accidental conflicts with other finalizer writers`,
			`metadata.finalizers: "b": prefer a domain-qualified finalizer name to avoid accidental conflicts with other finalizer writers`,
		}},
		{"kept by an update", []string{"hold"}, []string{"hold"}, nil},
		{"added by an update", []string{"hold", "more"}, []string{"hold"}, []string{
			`metadata.finalizers: "more": prefer a domain-qualified finalizer name to avoid accidental conflicts with other finalizer writers`,
		}},
	} {
		if got := FinalizerWarnings(c.new, c.old); !slices.Equal(got, c.want) {
			t.Errorf("%s: warnings %q, want %q", c.name, got, c.want)
		}
	}
}
