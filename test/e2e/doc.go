// Package e2e tests etcdaas behind a real kube-apiserver: etcd, kube-apiserver with the
// aggregation layer, kube-controller-manager (namespace, garbage-collector,
// serviceaccount and clusterrole-aggregation controllers), etcdaas-apiserver registered by
// one APIService per version under the least-privilege identity of deploy/, and
// etcdaas-controller (local backend), all on 127.0.0.1 (see the framework package),
// exercised with real kubectl binaries: the pinned v1.37 and /usr/bin/kubectl when present.
//
// Run with `make test-e2e`, or `go test ./test/e2e/...` once `make tools` has built the
// control plane: the tests build etcdaas's own commands themselves. The control-plane
// binaries are looked up in $ETCDAAS_TOOLS_BIN (default <repo>/_output/bin); when they are
// missing the tests are skipped, or fail when CI=true. A failed run keeps its work
// directory (PKI, kubeconfigs, data, one log per process) and prints the tail of each log.
//
// TestDeployManifests checks deploy/ offline; TestAggregated runs, on one control plane,
// in order: APIServicesAvailable, Discovery, KubectlScenario, Plugin, Auth, the cluster's
// admission configurations applied to etcdinstances (AdmissionPolicy, AdmissionWebhooks,
// MutatingAdmissionPolicy, ConnectPolicy), NamespaceDeletion, DeployDryRun, RestartAPIServer and NoForbiddenInLogs. TestFaults
// runs, on a control plane of its own, kill -9 of etcdaas-apiserver and a 10s stop of its
// storage etcd under 16 writers, then kill -9 of etcdaas-controller in the middle of a
// scale-up, a scale-down and a backup (docs/reliability.md has its figures).
package e2e
