// Package cluster is the cluster test tier: etcdaas installed from deploy/aggregated into a
// real single-node Kubernetes cluster on this machine (package node: kubelet, containerd,
// runc, CNI bridge, kube-proxy, CoreDNS), with images built by hack/images, and driven with
// kubectl through the aggregator. It needs root; see the README's test layers.
package cluster
