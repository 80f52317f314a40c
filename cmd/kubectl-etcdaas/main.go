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
	// one kills the process as usual. A signal the plugin was started with ignored stays
	// ignored: asking for it would undo the ignore, and a backup run under nohup would stop
	// when the terminal closes.
	ctx, stop := signal.NotifyContext(context.Background(), notIgnored(os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)...)
	go func() {
		<-ctx.Done()
		stop()
	}()
	code := cli.Main(ctx, cli.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}, os.Args[1:])
	stop()
	os.Exit(code)
}

// notIgnored returns sigs but SIGHUP and SIGINT when the process was started with them
// ignored (signal.Ignored; Go reports no other signal so), never an empty list, which
// NotifyContext would take as every signal, as long as SIGTERM is in sigs.
func notIgnored(sigs ...os.Signal) []os.Signal {
	var out []os.Signal
	for _, sig := range sigs {
		if !signal.Ignored(sig) {
			out = append(out, sig)
		}
	}
	return out
}
