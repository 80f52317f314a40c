// Package monitoring checks the alerting rules of deploy/components/monitoring with the
// pinned promtool (hack/tools/promtool): `promtool check rules`, `promtool test rules` with
// the input series of prometheusrule_test.yaml, and that every metric the rules use is one
// the controller serves.
//
// Run with `make test-monitoring`, or `go test ./test/monitoring/...` once
// `hack/tools/build.sh promtool` has built promtool into $ETCDAAS_TOOLS_BIN (default
// <repo>/_output/bin); without it the test is skipped, or fails when CI=true. `make test`
// runs it last, next to the cluster tier, since promtool is built while the other tests run.
package monitoring
