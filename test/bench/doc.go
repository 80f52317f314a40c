// Package bench holds the side-by-side measurements of `make bench`. Each benchmark runs
// the real binaries (etcdaas-apiserver, and the e2e control plane of test/e2e/framework
// where it needs kube-apiserver) and prints its figures next to a peer measured in the
// same run; the figures are also written under _output/bench/. The benchmarks run only
// with -bench; `make test` runs TestAPIHarness, every scenario of BenchmarkAPI (watch
// fan-out and backup stream included) and of BenchmarkAggregatorHop at a tiny size, to prove
// the harness works.
package bench
