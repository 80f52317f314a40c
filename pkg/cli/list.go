package cli

import (
	"fmt"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// listOptions are the flags of `list`.
type listOptions struct {
	output        string
	allNamespaces bool
	selector      string
}

func newListCommand(f *Factory) *cobra.Command {
	o := &listOptions{}
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List ETCDInstances",
		Example: `  # Instances in the current namespace
  kubectl etcdaas list

  # Instances in every namespace, with TLS, members and leader (the server's table, as kubectl get)
  kubectl etcdaas list -A -o wide`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd, f)
		},
	}
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "Output format: wide, yaml, json, name, or a template as kubectl takes it: jsonpath=TEMPLATE, jsonpath-file=FILE, go-template=TEMPLATE, ... (default: the server's table, as kubectl get prints it).")
	cmd.Flags().BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "List instances in every namespace.")
	cmd.Flags().StringVarP(&o.selector, "selector", "l", "", "Label selector to filter on, such as team=storage.")
	return cmd
}

func (o *listOptions) run(cmd *cobra.Command, f *Factory) error {
	if err := validateOutput(o.output); err != nil {
		return err
	}
	ns, client, err := f.NamespacedClient()
	if err != nil {
		return err
	}
	if o.allNamespaces {
		ns = metav1.NamespaceAll
	}
	if isTable(o.output) {
		table, err := getTable(cmd.Context(), client, ns, "", o.selector)
		if err != nil {
			return err
		}
		if len(table.Rows) == 0 {
			// kubectl says so on stderr, so that scripts reading stdout see nothing.
			if o.allNamespaces {
				fmt.Fprintln(f.IOStreams.ErrOut, "No resources found")
			} else {
				fmt.Fprintf(f.IOStreams.ErrOut, "No resources found in %s namespace.\n", ns)
			}
			return nil
		}
		return printTable(f.IOStreams.Out, table, o.output, o.allNamespaces)
	}
	list, err := client.EtcdaasV1beta1().ETCDInstances(ns).List(cmd.Context(), metav1.ListOptions{LabelSelector: o.selector})
	if err != nil {
		return err
	}
	p := &instancePrinter{format: o.output}
	return p.print(f.IOStreams.Out, list.Items, true)
}
