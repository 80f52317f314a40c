// Command etcdaas-apiserver serves the etcdaas.dev API, aggregated behind kube-apiserver or
// standalone (--standalone --data-dir DIR).
package main

import (
	"os"

	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/component-base/cli"

	"github.com/etcdaas/etcdaas/pkg/cmd/server"
)

func main() {
	ctx := genericapiserver.SetupSignalContext()
	cmd := server.NewCommand(ctx, os.Stdout, os.Stderr)
	os.Exit(cli.Run(cmd))
}
