package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/conversion"
)

// convertOptions are the flags of `convert`.
type convertOptions struct {
	filenames     []string
	outputVersion string
	output        string
}

func newConvertCommand(f *Factory) *cobra.Command {
	o := &convertOptions{}
	cmd := &cobra.Command{
		Use:   "convert -f FILE [--output-version V] [-o yaml|json]",
		Short: "Convert ETCDInstance manifests between v1alpha1 and v1beta1, offline",
		Long: `Convert ETCDInstance manifests between the served API versions, v1alpha1 and v1beta1,
without contacting a server, with the same defaulting and conversion the server applies.

Input is YAML (several documents separated by ---) or JSON (one object or several in a row);
a v1 List of ETCDInstances is converted item by item. Output is YAML by default, documents
separated by ---; with -o json, a single object, or a v1 List when there are several.

What v1alpha1 cannot express (version, storage, members, conditions, ...) is kept in the
annotation etcdaas.dev/v1beta1-fields and restored when converting back to v1beta1.`,
		Example: `  # Upgrade an old manifest to v1beta1
  kubectl etcdaas convert -f old.yaml --output-version v1beta1

  # Produce v1alpha1 JSON for an old client, from stdin
  cat my-etcd.yaml | kubectl etcdaas convert -f - --output-version etcdaas.dev/v1alpha1 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd, f)
		},
	}
	cmd.Flags().StringArrayVarP(&o.filenames, "filename", "f", nil, "File to convert; - reads stdin. Repeat for several files.")
	cmd.Flags().StringVar(&o.outputVersion, "output-version", "", "Version to convert to: v1beta1 or v1alpha1, with or without the etcdaas.dev/ group (default: v1beta1, the preferred version).")
	cmd.Flags().StringVarP(&o.output, "output", "o", "yaml", "Output format: yaml or json.")
	return cmd
}

func (o *convertOptions) run(cmd *cobra.Command, f *Factory) error {
	if len(o.filenames) == 0 {
		return usageErrorf(cmd, "at least one file is required: -f FILE (or -f - for stdin)")
	}
	if o.output != "yaml" && o.output != "json" {
		return fmt.Errorf("unable to match a printer suitable for the output format %q, allowed formats are: json,yaml", o.output)
	}
	version := o.outputVersion
	if version == "" {
		version = conversion.ServedVersions[0].String()
	}
	gv, err := conversion.ParseVersion(version)
	if err != nil {
		return err
	}
	c := conversion.New()

	// Convert everything before writing anything: a bad document fails the whole command
	// with nothing printed, instead of leaving half a stream behind.
	var docs [][]byte // JSON of each converted object
	for _, name := range o.filenames {
		data, err := readInput(name, f.IOStreams.In)
		if err != nil {
			return err
		}
		converted, err := convertStream(c, data, gv)
		if err != nil {
			return fmt.Errorf("%s: %w", displayFilename(name), err)
		}
		docs = append(docs, converted...)
	}
	if len(docs) == 0 {
		return errors.New("no objects passed to convert")
	}
	return writeConverted(f.IOStreams.Out, docs, o.output == "json")
}

// displayFilename names an input in messages.
func displayFilename(name string) string {
	if name == "-" {
		return "<stdin>"
	}
	return name
}

// readInput reads a file, or stdin for "-".
func readInput(name string, stdin io.Reader) ([]byte, error) {
	if name == "-" {
		if stdin == nil {
			return nil, errors.New("no standard input to read")
		}
		return io.ReadAll(stdin)
	}
	return os.ReadFile(name)
}

// typeMeta is the part of a document that tells a list from an object.
type typeMeta struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Items      []json.RawMessage `json:"items"`
}

// convertStream splits data into YAML documents or JSON values and converts each; a v1
// List is converted item by item and stays a List. It returns each result as JSON.
func convertStream(c *conversion.Converter, data []byte, gv schema.GroupVersion) ([][]byte, error) {
	decoder := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out [][]byte
	for index := 1; ; index++ {
		var raw json.RawMessage
		if err := decoder.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("document %d: %w", index, err)
		}
		trimmed := bytes.TrimSpace(raw)
		if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
			continue // an empty YAML document, such as a leading ---
		}
		converted, err := convertDocument(c, trimmed, gv)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", index, err)
		}
		out = append(out, converted)
	}
}

// convertDocument converts one JSON document, an object or a v1 List of objects.
func convertDocument(c *conversion.Converter, doc []byte, gv schema.GroupVersion) ([]byte, error) {
	var meta typeMeta
	if err := json.Unmarshal(doc, &meta); err != nil {
		return nil, errors.New("not a YAML or JSON object")
	}
	if meta.Kind != "List" || meta.APIVersion != "v1" {
		return convertObject(c, doc, gv)
	}
	items := make([]json.RawMessage, 0, len(meta.Items))
	for i, item := range meta.Items {
		converted, err := convertObject(c, item, gv)
		if err != nil {
			return nil, fmt.Errorf("items[%d]: %w", i, err)
		}
		items = append(items, json.RawMessage(converted))
	}
	return json.Marshal(list(items))
}

// convertObject converts one ETCDInstance (or ETCDInstanceList) document to JSON in gv,
// first rejecting, in words a user understands, what is not an etcdaas.dev object.
func convertObject(c *conversion.Converter, doc []byte, gv schema.GroupVersion) ([]byte, error) {
	var meta metav1.TypeMeta
	if err := json.Unmarshal(doc, &meta); err != nil {
		return nil, errors.New("not a YAML or JSON object")
	}
	if meta.APIVersion == "" || meta.Kind == "" {
		return nil, errors.New("apiVersion and kind are required")
	}
	from, err := schema.ParseGroupVersion(meta.APIVersion)
	if err != nil {
		return nil, err
	}
	if from.Group != etcdaas.GroupName {
		return nil, fmt.Errorf("%s %s is not an %s object: convert handles ETCDInstance", meta.APIVersion, meta.Kind, etcdaas.GroupName)
	}
	return c.ConvertDocument(doc, gv, true)
}

// list returns a v1 List holding items.
func list(items []json.RawMessage) any {
	return struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Items      []json.RawMessage `json:"items"`
	}{APIVersion: "v1", Kind: "List", Items: items}
}

// writeConverted writes the converted objects: YAML documents separated by ---, or JSON
// (one object, or a v1 List of several).
func writeConverted(w io.Writer, docs [][]byte, asJSON bool) error {
	if asJSON {
		data := docs[0]
		if len(docs) > 1 {
			items := make([]json.RawMessage, len(docs))
			for i := range docs {
				items[i] = docs[i]
			}
			var err error
			if data, err = json.Marshal(list(items)); err != nil {
				return err
			}
		}
		var buf bytes.Buffer
		if err := json.Indent(&buf, data, "", "    "); err != nil {
			return err
		}
		buf.WriteByte('\n')
		_, err := buf.WriteTo(w)
		return err
	}
	for i, doc := range docs {
		out, err := yaml.JSONToYAML(doc)
		if err != nil {
			return err
		}
		if i > 0 {
			if _, err := io.WriteString(w, "---\n"); err != nil {
				return err
			}
		}
		if _, err := w.Write(out); err != nil {
			return err
		}
	}
	return nil
}
