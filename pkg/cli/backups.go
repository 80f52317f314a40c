package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/printers"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
)

// backupsOptions are the flags of `backups`.
type backupsOptions struct {
	output string
}

func newBackupsCommand(f *Factory) *cobra.Command {
	o := &backupsOptions{}
	cmd := &cobra.Command{
		Use:   "backups NAME",
		Short: "List the scheduled backups an ETCDInstance's destination holds",
		Long: `List the backups in an ETCDInstance's backup destination (spec.backup), newest first,
with the time, size, etcd revision and etcd version each was taken at. The server reads the
destination with its own credentials: no S3 credentials are needed here. Needs the
etcdinstances/backups permission.

Backups that other instances left in the same destination (such as an earlier instance of
the same name, deleted since) are listed too; -o yaml shows the instanceUID of each.`,
		Example: `  # Backups of my-etcd
  kubectl etcdaas backups my-etcd

  # With their SHA-256 and instance UID, as YAML
  kubectl etcdaas backups my-etcd -o yaml`,
		Args: exactlyOneName,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, f, args[0])
		},
	}
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "Output format: yaml or json (default: a table).")
	return cmd
}

func (o *backupsOptions) run(cmd *cobra.Command, f *Factory, name string) error {
	if o.output != outputTable && o.output != outputYAML && o.output != outputJSON {
		return usageErrorf(cmd, "--output %q: want yaml or json", o.output)
	}
	ns, client, err := f.NamespacedClient()
	if err != nil {
		return err
	}
	list, err := client.EtcdaasV1beta1().ETCDInstances(ns).ListBackups(cmd.Context(), name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	out := f.IOStreams.Out
	switch o.output {
	case outputYAML, outputJSON:
		list.SetGroupVersionKind(v1beta1.SchemeGroupVersion.WithKind("ETCDInstanceBackupList"))
		if list.Items == nil {
			list.Items = []v1beta1.BackupInfo{} // items: [], as kubectl prints an empty list
		}
		// kubectl's printers: JSON indented by four spaces, YAML as kubectl get -o yaml.
		var printer printers.ResourcePrinter = &printers.JSONPrinter{}
		if o.output == outputYAML {
			printer = &printers.YAMLPrinter{}
		}
		return printer.PrintObj(list, out)
	}
	if len(list.Items) == 0 {
		why := ""
		if inst, err := client.EtcdaasV1beta1().ETCDInstances(ns).Get(cmd.Context(), name, metav1.GetOptions{}); err == nil && inst.Spec.Backup == nil {
			why = ": it has no spec.backup, so nothing backs it up on a schedule ('kubectl etcdaas backup' saves a snapshot now)"
		}
		fmt.Fprintf(f.IOStreams.ErrOut, "No backups of %s in %s namespace%s.\n", name, ns, why)
		return nil
	}
	w := tabwriter.NewWriter(out, 0, 8, 3, ' ', 0)
	fmt.Fprintln(w, "KEY\tTIME\tSIZE\tREVISION\tETCD VERSION")
	for _, b := range list.Items {
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\n", b.Key, b.CompletionTime.UTC().Format(time.RFC3339),
			resource.NewQuantity(b.SizeBytes, resource.BinarySI).String(), b.Revision, b.EtcdVersion)
	}
	return w.Flush()
}
