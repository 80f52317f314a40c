// Command coredns is CoreDNS (the pinned github.com/coredns/coredns) with only the plugins
// the cluster test tier's Corefile uses (test/cluster/node/dns.go). Upstream's main imports
// every plugin (core/plugin), which pulls in the AWS, Azure, Google Cloud, Datadog and etcd
// clients: its cold compile takes 1.6 times the CPU of this one (297 s against 189 s).
// CoreDNS documents this narrowing (import the plugins, then dnsserver.SetDirectives) for
// builds that need fewer of them.
//
// A directive in the Corefile that is not listed here makes CoreDNS refuse to start with
// "unknown directive": add its plugin import and its name below, in upstream's order
// (core/dnsserver/zdirectives.go of the pinned version).
package main

import (
	"fmt"
	"os"

	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
)

// directives are the linked plugins in upstream's execution order.
var directives = []string{"ready", "health", "errors", "cache", "kubernetes"}

func main() {
	if err := dnsserver.SetDirectives(directives); err != nil {
		fmt.Fprintf(os.Stderr, "coredns: %v\n", err)
		os.Exit(1)
	}
	coremain.Run()
}
