package cli

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/printers"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
)

// qualifiedResource is how kubectl names the resource in messages: "etcdinstance.etcdaas.dev".
const qualifiedResource = "etcdinstance." + etcdaas.GroupName

// Output formats accepted by -o on list and get.
const (
	outputTable = ""
	outputWide  = "wide"
	outputYAML  = "yaml"
	outputJSON  = "json"
	outputName  = "name"
)

// validateOutput rejects an -o value no printer handles, with kubectl's message.
func validateOutput(format string) error {
	switch format {
	case outputTable, outputWide, outputYAML, outputJSON, outputName:
		return nil
	}
	return fmt.Errorf("unable to match a printer suitable for the output format %q, allowed formats are: json,name,wide,yaml", format)
}

// instancePrinter writes ETCDInstances in one output format.
type instancePrinter struct {
	format        string
	allNamespaces bool
	now           func() time.Time
}

// print writes the instances to w. With printList, yaml and json write one list object
// (as `kubectl get` does for a list) rather than a single object.
func (p *instancePrinter) print(w io.Writer, items []v1beta1.ETCDInstance, printList bool) error {
	switch p.format {
	case outputYAML, outputJSON:
		var printer printers.ResourcePrinter = &printers.JSONPrinter{}
		if p.format == outputYAML {
			printer = &printers.YAMLPrinter{}
		}
		if printList {
			list := &v1beta1.ETCDInstanceList{Items: make([]v1beta1.ETCDInstance, len(items))}
			list.SetGroupVersionKind(v1beta1.SchemeGroupVersion.WithKind("ETCDInstanceList"))
			for i := range items {
				list.Items[i] = *forOutput(&items[i])
			}
			return printer.PrintObj(list, w)
		}
		for i := range items {
			if err := printer.PrintObj(forOutput(&items[i]), w); err != nil {
				return err
			}
		}
		return nil
	case outputName:
		for i := range items {
			if _, err := fmt.Fprintf(w, "%s/%s\n", qualifiedResource, items[i].Name); err != nil {
				return err
			}
		}
		return nil
	default:
		return p.printTable(w, items)
	}
}

// forOutput returns a copy of in with apiVersion and kind set and managedFields dropped, as
// kubectl shows objects unless --show-managed-fields is given.
func forOutput(in *v1beta1.ETCDInstance) *v1beta1.ETCDInstance {
	out := in.DeepCopy()
	out.SetGroupVersionKind(v1beta1.SchemeGroupVersion.WithKind("ETCDInstance"))
	out.ManagedFields = nil
	return out
}

// printTable writes the human-readable table: NAME REPLICAS READY PHASE VERSION AGE (READY
// is ready members over desired replicas), with
// TLS, MEMBERS and LEADER added by -o wide and NAMESPACE first with --all-namespaces.
func (p *instancePrinter) printTable(w io.Writer, items []v1beta1.ETCDInstance) error {
	tw := printers.GetNewTabWriter(w)
	var header []string
	if p.allNamespaces {
		header = append(header, "NAMESPACE")
	}
	header = append(header, "NAME", "REPLICAS", "READY", "PHASE", "VERSION", "AGE")
	if p.format == outputWide {
		header = append(header, "TLS", "MEMBERS", "LEADER")
	}
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	now := time.Now
	if p.now != nil {
		now = p.now
	}
	for i := range items {
		in := &items[i]
		var row []string
		if p.allNamespaces {
			row = append(row, in.Namespace)
		}
		replicas := "<unset>"
		if in.Spec.Replicas != nil {
			replicas = strconv.Itoa(int(*in.Spec.Replicas))
		}
		row = append(row,
			in.Name,
			replicas,
			fmt.Sprintf("%d/%s", in.Status.ReadyReplicas, replicas),
			orNone(string(in.Status.Phase)),
			orNone(in.Spec.Version),
			age(in.CreationTimestamp, now()),
		)
		if p.format == outputWide {
			tls := "false"
			if in.Spec.TLS != nil && in.Spec.TLS.Enabled {
				tls = "true"
			}
			leader := ""
			for _, m := range in.Status.Members {
				if m.Leader {
					leader = m.Name
				}
			}
			row = append(row, tls, strconv.Itoa(len(in.Status.Members)), orNone(leader))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

// orNone returns s, or "<none>" when it is empty, as kubectl tables do.
func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

// age is kubectl's AGE column: "<unknown>" without a creation time, else a short duration.
func age(created metav1.Time, now time.Time) string {
	if created.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(created.Time))
}
