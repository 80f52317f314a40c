package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcdaas/etcdaas/test/integration/framework"
)

const alphaManifest = `apiVersion: etcdaas.dev/v1alpha1
kind: ETCDInstance
metadata:
  name: alpha-one
spec:
  replicas: 1
  with_tls_bundle: true
`

const betaManifest = `apiVersion: etcdaas.dev/v1beta1
kind: ETCDInstance
metadata:
  name: beta-one
spec:
  replicas: 3
  version: "3.7"
  storage:
    size: 1Gi
`

const ssaManifest = `apiVersion: etcdaas.dev/v1beta1
kind: ETCDInstance
metadata:
  name: ssa-one
  labels:
    tier: REPLACE
spec:
  replicas: 3
`

// editor is an EDITOR that turns "replicas: 3" into "replicas: 7" in the file kubectl edits.
const editor = `#!/bin/sh
set -e
sed -i 's/^  replicas: 3$/  replicas: 7/' "$1"
`

// TestKubectl drives the real kubectl binaries against the standalone server.
func TestKubectl(t *testing.T) {
	for label, bin := range framework.KubectlBinaries(t) {
		t.Run(label, func(t *testing.T) {
			k := newKubectl(t, bin)
			t.Logf("kubectl version: %s", k.run("version", "--client").out)

			dir := t.TempDir()
			alpha := writeFile(t, dir, "alpha.yaml", alphaManifest)
			beta := writeFile(t, dir, "beta.yaml", betaManifest)

			r := k.must("apply", "-f", alpha, "-f", beta)
			r.contains(t, "etcdinstance.etcdaas.dev/alpha-one created", "etcdinstance.etcdaas.dev/beta-one created")
			checkKubectlGet(t, k)
			checkKubectlScaleAndExplain(t, k)
			checkKubectlApplyAndEdit(t, k, dir)

			k.must("delete", "etcdinstance", "alpha-one", "beta-one", "ssa-one").contains(t, "deleted")
			r = k.run("get", "etcdinstance", "alpha-one")
			if r.err == nil || !strings.Contains(r.out, "NotFound") {
				t.Errorf("get after delete: %v %s", r.err, r.out)
			}
			k.must("get", "etcd").contains(t, "No resources found")
		})
	}
}

// writeFile writes content to the file name (executable) in dir, and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkKubectlGet checks kubectl get of the instances alpha-one and beta-one: the table and
// its wide columns, the short names, and each object in the other API version.
func checkKubectlGet(t *testing.T, k *kubectl) {
	t.Helper()
	r := k.must("get", "etcd")
	r.contains(t, "NAME", "REPLICAS", "READY", "PHASE", "VERSION", "AGE", "alpha-one", "beta-one")
	header := strings.Fields(strings.SplitN(r.out, "\n", 2)[0])
	if strings.Join(header, " ") != "NAME REPLICAS READY PHASE VERSION AGE" {
		t.Errorf("get etcd header %q", header)
	}
	r = k.must("get", "etcd", "alpha-one", "-o", "wide")
	if header := strings.Fields(strings.SplitN(r.out, "\n", 2)[0]); strings.Join(header, " ") != "NAME REPLICAS READY PHASE VERSION AGE TLS MEMBERS LEADER" {
		t.Errorf("get etcd -o wide header %q", header)
	}
	r.contains(t, "true") // alpha-one has with_tls_bundle: true
	k.must("get", "etcdaas").contains(t, "alpha-one", "beta-one")

	r = k.must("get", "etcdinstances.v1alpha1.etcdaas.dev", "beta-one", "-o", "yaml")
	r.contains(t, "apiVersion: etcdaas.dev/v1alpha1", "with_tls_bundle: false", "replicas: 3", "etcdaas.dev/v1beta1-fields")
	r = k.must("get", "etcdinstances.v1beta1.etcdaas.dev", "alpha-one", "-o", "yaml")
	r.contains(t, "apiVersion: etcdaas.dev/v1beta1", "enabled: true", "version: \"3.7\"")
	r.lacks(t, "etcdaas.dev/v1beta1-fields")
}

// checkKubectlScaleAndExplain checks kubectl scale of beta-one (to 5 replicas) and the scale
// subresource's table, and kubectl explain in both API versions.
func checkKubectlScaleAndExplain(t *testing.T, k *kubectl) {
	t.Helper()
	k.must("scale", "etcdinstance", "beta-one", "--replicas=5").contains(t, "scaled")
	k.must("get", "etcdinstance", "beta-one", "-o", "jsonpath={.spec.replicas}").equals(t, "5")
	// The scale subresource's table, as kube-apiserver prints a Deployment's.
	r := k.must("get", "etcdinstance", "beta-one", "--subresource=scale")
	if header := strings.Fields(strings.SplitN(r.out, "\n", 2)[0]); strings.Join(header, " ") != "NAME DESIRED AVAILABLE AGE" {
		t.Errorf("get --subresource=scale header %q", header)
	}
	if row := strings.Fields(strings.Split(strings.TrimSpace(r.out), "\n")[1]); len(row) != 4 || row[0] != "beta-one" || row[1] != "5" {
		t.Errorf("get --subresource=scale row %q", row)
	}
	k.must("get", "etcdinstances.v1alpha1.etcdaas.dev", "alpha-one", "-o", "jsonpath={.spec.replicas}").equals(t, "1")

	r = k.must("explain", "etcdinstances.spec")
	r.contains(t, "VERSION:    v1beta1", "Replicas is the number of etcd members", "storage", "tls", "version")
	r = k.must("explain", "etcdinstances.spec", "--api-version=etcdaas.dev/v1alpha1")
	r.contains(t, "VERSION:    v1alpha1", "with_tls_bundle", "Replicas is the number of etcd members, from 1 to 9. Defaults to 1")
	r.lacks(t, "storageClassName")
}

// checkKubectlApplyAndEdit checks kubectl apply --server-side of ssa-one (files in dir),
// a second field manager's conflict, and kubectl edit in both API versions.
func checkKubectlApplyAndEdit(t *testing.T, k *kubectl, dir string) {
	t.Helper()
	ssa := writeFile(t, dir, "ssa.yaml", strings.Replace(ssaManifest, "REPLACE", "one", 1))
	k.must("apply", "--server-side", "-f", ssa).contains(t, "serverside-applied")
	ssa = writeFile(t, dir, "ssa.yaml", strings.Replace(ssaManifest, "REPLACE", "two", 1))
	k.must("apply", "--server-side", "-f", ssa).contains(t, "serverside-applied")
	k.must("get", "etcd", "ssa-one", "-o", "jsonpath={.metadata.labels.tier}").equals(t, "two")
	// A second manager changing replicas conflicts with kubectl's ownership.
	conflict := writeFile(t, dir, "conflict.yaml", strings.Replace(strings.Replace(ssaManifest, "REPLACE", "two", 1), "replicas: 3", "replicas: 5", 1))
	r := k.run("apply", "--server-side", "--field-manager=other", "-f", conflict)
	if r.err == nil || !strings.Contains(r.out, "conflict") {
		t.Errorf("conflicting server-side apply: err %v, output %s", r.err, r.out)
	}

	editorPath := writeFile(t, dir, "editor.sh", editor)
	k.env = append(k.env, "EDITOR="+editorPath, "KUBE_EDITOR="+editorPath)
	k.must("edit", "etcdinstance", "ssa-one").contains(t, "edited")
	k.must("get", "etcd", "ssa-one", "-o", "jsonpath={.spec.replicas}").equals(t, "7")
	k.must("edit", "etcdinstances.v1alpha1.etcdaas.dev", "beta-one", "--output-patch=false")
	// beta-one had 5 replicas: the editor changed nothing, and nothing was lost.
	k.must("get", "etcd", "beta-one", "-o", "jsonpath={.spec.version} {.spec.storage.size} {.spec.replicas}").equals(t, "3.7 1Gi 5")
}

type kubectl struct {
	t   *testing.T
	bin string
	ns  string
	env []string
	// timeout bounds each command; a minute when zero.
	timeout time.Duration
}

type result struct {
	args []string
	out  string
	err  error
}

func newKubectl(t *testing.T, bin string) *kubectl {
	home := t.TempDir()
	return &kubectl{t: t, bin: bin, ns: namespace(t), env: []string{
		"HOME=" + home,
		"KUBECONFIG=" + shared.KubeconfigPath,
		"PATH=" + os.Getenv("PATH"),
	}}
}

// command is kubectl with args in the kubectl's namespace, bounded by its timeout; cancel
// releases the timer.
func (k *kubectl) command(args ...string) (cmd *exec.Cmd, cancel context.CancelFunc) {
	timeout := k.timeout
	if timeout == 0 {
		timeout = time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	cmd = exec.CommandContext(ctx, k.bin, append([]string{"--namespace", k.ns}, args...)...)
	cmd.Env = k.env
	return cmd, cancel
}

func (k *kubectl) run(args ...string) result {
	k.t.Helper()
	cmd, cancel := k.command(args...)
	defer cancel()
	out, err := cmd.CombinedOutput()
	k.t.Logf("$ kubectl %s\n%s", strings.Join(args, " "), out)
	return result{args: args, out: string(out), err: err}
}

// mustStdout runs kubectl like must and returns what it printed on its standard output
// alone: kubectl and client-go log warnings on the standard error (a watch that kubectl wait
// ends, say), which are not what the command printed of the object.
func (k *kubectl) mustStdout(args ...string) string {
	k.t.Helper()
	cmd, cancel := k.command(args...)
	defer cancel()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	k.t.Logf("$ kubectl %s\n%s%s", strings.Join(args, " "), out, stderr.String())
	if err != nil {
		k.t.Fatalf("kubectl %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

func (k *kubectl) must(args ...string) result {
	k.t.Helper()
	r := k.run(args...)
	if r.err != nil {
		k.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), r.err, r.out)
	}
	return r
}

func (r result) contains(t *testing.T, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(r.out, w) {
			t.Errorf("kubectl %s: output lacks %q:\n%s", strings.Join(r.args, " "), w, r.out)
		}
	}
}

func (r result) lacks(t *testing.T, unwanted ...string) {
	t.Helper()
	for _, u := range unwanted {
		if strings.Contains(r.out, u) {
			t.Errorf("kubectl %s: output has %q:\n%s", strings.Join(r.args, " "), u, r.out)
		}
	}
}

func (r result) equals(t *testing.T, want string) {
	t.Helper()
	if strings.TrimSpace(r.out) != want {
		t.Errorf("kubectl %s: output %q, want %q", strings.Join(r.args, " "), r.out, want)
	}
}
