// Command kubectl-etcdaas is the kubectl plugin for etcdaas.dev ETCDInstances. Put it on
// PATH and run `kubectl etcdaas --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"


	"github.com/etcdaas/etcdaas/pkg/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, cli.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}, os.Args[1:])
	stop()
	os.Exit(code)
}
