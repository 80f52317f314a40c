// Package cli implements kubectl-etcdaas, the kubectl plugin for etcdaas.dev ETCDInstances:
// create, list, get, delete, scale, backup, restore, recover and an offline convert between
// API versions.
//
// Every command reads the usual kubeconfig flags (--kubeconfig, --context, -n/--namespace, …)
// and reports errors the way kubectl does: one line on stderr and exit code 1.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/rest"

	"github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned"
)

// displayName is how users invoke the plugin: kubectl finds kubectl-etcdaas on PATH.
const displayName = "kubectl etcdaas"

// Factory holds what every command shares: the kubeconfig flags, the I/O streams and the
// way clients are built.
type Factory struct {
	// ConfigFlags are the kubeconfig flags bound to the root command.
	ConfigFlags *genericclioptions.ConfigFlags
	// IOStreams are the command's stdin, stdout and stderr.
	IOStreams genericiooptions.IOStreams

	// isTerminal reports whether w is an interactive terminal; replaced in tests.
	isTerminal func(w io.Writer) bool
	// verifySnapshot checks a downloaded snapshot file.
	verifySnapshot verifyFunc
}

// IOStreams are the standard streams a command reads and writes.
type IOStreams = genericiooptions.IOStreams

// NewFactory returns a Factory with fresh kubeconfig flags writing to streams.
func NewFactory(streams genericiooptions.IOStreams) *Factory {
	return &Factory{
		ConfigFlags:    genericclioptions.NewConfigFlags(true),
		IOStreams:      streams,
		isTerminal:     fileIsTerminal,
		verifySnapshot: verifyInProcess,
	}
}

// fileIsTerminal reports whether w is an *os.File attached to a terminal.
func fileIsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// RESTConfig returns the client configuration from the kubeconfig flags. Server warnings
// (such as the one for an even number of replicas) are printed to stderr as kubectl does.
func (f *Factory) RESTConfig() (*rest.Config, error) {
	config, err := f.ConfigFlags.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	config = rest.CopyConfig(config)
	config.UserAgent = "kubectl-etcdaas/" + rest.DefaultKubernetesUserAgent()
	config.WarningHandler = rest.NewWarningWriter(f.IOStreams.ErrOut, rest.WarningWriterOptions{Deduplicate: true})
	return config, nil
}

// Clientset returns the typed etcdaas clientset for the configured server.
func (f *Factory) Clientset() (versioned.Interface, error) {
	config, err := f.RESTConfig()
	if err != nil {
		return nil, err
	}
	return versioned.NewForConfig(config)
}

// Namespace returns the namespace from -n, else from the kubeconfig context, else "default".
func (f *Factory) Namespace() (string, error) {
	ns, _, err := f.ConfigFlags.ToRawKubeConfigLoader().Namespace()
	return ns, err
}

// NamespacedClient returns the namespace (as Namespace does) and the clientset, what every
// command that talks to the server starts with.
func (f *Factory) NamespacedClient() (string, versioned.Interface, error) {
	ns, err := f.Namespace()
	if err != nil {
		return "", nil, err
	}
	client, err := f.Clientset()
	if err != nil {
		return "", nil, err
	}
	return ns, client, nil
}

// NewRootCommand returns the kubectl-etcdaas command with every subcommand.
func NewRootCommand(f *Factory) *cobra.Command {
	root := &cobra.Command{
		Use:   "kubectl-etcdaas",
		Short: "Manage etcdaas.dev ETCDInstances: etcd clusters run for you",
		Long: `Manage etcdaas.dev ETCDInstances, etcd clusters run for you by etcdaas.

Create, list, inspect, scale and delete instances, download a verified snapshot of an
instance's data or restore one, list its scheduled backups, defragment its members, rebuild
one that lost quorum, and convert manifests between the v1alpha1 and v1beta1 API versions.`,
		Annotations: map[string]string{
			cobra.CommandDisplayNameAnnotation: displayName,
		},
		SilenceErrors: true,
		SilenceUsage:  true,
		// A bare `kubectl etcdaas` prints help rather than failing.
		Run: func(cmd *cobra.Command, _ []string) { _ = cmd.Help() },
	}
	root.SetIn(f.IOStreams.In)
	root.SetOut(f.IOStreams.Out)
	root.SetErr(f.IOStreams.ErrOut)
	f.ConfigFlags.AddFlags(root.PersistentFlags())
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageErrorf(cmd, "%v", err)
	})

	root.AddCommand(
		newCreateCommand(f),
		newListCommand(f),
		newGetCommand(f),
		newDeleteCommand(f),
		newScaleCommand(f),
		newBackupCommand(f),
		newRestoreCommand(f),
		newRecoverCommand(f),
		newDefragCommand(f),
		newBackupsCommand(f),
		newConvertCommand(f),
	)
	return root
}

// Run executes the plugin with args (without the program name) and returns the exit code:
// 0 on success, 1 on any error, which is printed to stderr as kubectl prints it. Unlike Main
// it checks snapshots in this process, for programs (such as tests) that embed the plugin.
func Run(ctx context.Context, streams genericiooptions.IOStreams, args []string) int {
	return run(ctx, NewFactory(streams), args)
}

// run is Run with a given Factory.
func run(ctx context.Context, f *Factory, args []string) int {
	root := NewRootCommand(f)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(f.IOStreams.ErrOut, errorMessage(err))
		var usage *usageError
		if errors.As(err, &usage) && usage.hint != "" {
			fmt.Fprintln(f.IOStreams.ErrOut, usage.hint)
		}
		return 1
	}
	return 0
}

// usageError is a mistake in the command line; it carries a hint pointing at the help.
type usageError struct {
	msg  string
	hint string
}

func (e *usageError) Error() string { return e.msg }

// usageErrorf returns a usageError for cmd, with kubectl's "See '... -h'" hint.
func usageErrorf(cmd *cobra.Command, format string, args ...any) error {
	return &usageError{
		msg:  fmt.Sprintf(format, args...),
		hint: fmt.Sprintf("See '%s -h' for help and examples", commandPath(cmd)),
	}
}

// commandPath is cmd's path as the user typed it: "kubectl etcdaas create".
func commandPath(cmd *cobra.Command) string {
	path := cmd.CommandPath()
	return strings.Replace(path, "kubectl-etcdaas", displayName, 1)
}

// exactlyOneName is a cobra.PositionalArgs requiring a single NAME.
func exactlyOneName(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usageErrorf(cmd, "exactly one NAME is required, got %d", len(args))
	}
	return nil
}
