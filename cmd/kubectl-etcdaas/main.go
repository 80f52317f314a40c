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
	// The first interrupt (Ctrl-C), kill (SIGTERM) or hangup (the terminal closed, the ssh
	// session dropped) cancels the command (a backup then removes its .part file); a second
	// one kills the process as usual.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		<-ctx.Done()
		stop()
	}()
	code := cli.Main(ctx, cli.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}, os.Args[1:])
	stop()
	os.Exit(code)
}
