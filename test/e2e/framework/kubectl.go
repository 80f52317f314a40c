package framework

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// KubectlTimeout bounds a kubectl invocation of a client whose Timeout is zero.
const KubectlTimeout = 2 * time.Minute

// KubectlClient runs one kubectl binary with one kubeconfig.
type KubectlClient struct {
	// Path is the kubectl binary.
	Path string
	// Kubeconfig is passed in $KUBECONFIG (not --kubeconfig: kubectl refuses flags before a
	// plugin's name).
	Kubeconfig string
	// Env is added to the environment (such as KUBECTL_EXTERNAL_DIFF or EDITOR).
	Env []string
	// Timeout bounds each run (KubectlTimeout when zero): a run that waits longer on
	// purpose, such as a plugin command with a --timeout of its own, needs more.
	Timeout time.Duration
}

// Result is the outcome of one kubectl run.
type Result struct {
	Args   []string
	Stdout string
	Stderr string
	Err    error
}

// String describes the run for failure messages.
func (r Result) String() string {
	return fmt.Sprintf("kubectl %s: err=%v\nstdout:\n%s\nstderr:\n%s", strings.Join(r.Args, " "), r.Err, r.Stdout, r.Stderr)
}

// Run runs kubectl with args, stdin as its input (may be empty).
func (k KubectlClient) Run(ctx context.Context, stdin string, args ...string) Result {
	timeout := k.Timeout
	if timeout == 0 {
		timeout = KubectlTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, k.Path, args...)
	// A clean environment apart from what kubectl needs: no user kubeconfig, and a home
	// (hence a discovery cache) of its own per kubeconfig.
	home := k.Kubeconfig + ".home"
	if err := os.MkdirAll(home, 0o700); err != nil {
		return Result{Args: args, Err: err}
	}
	cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"KUBECONFIG=" + k.Kubeconfig,
	}, k.Env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err := cmd.Run()
	return Result{Args: args, Stdout: stdout.String(), Stderr: stderr.String(), Err: err}
}

// Version returns the client's gitVersion, such as v1.37.2.
func (k KubectlClient) Version(ctx context.Context) (string, error) {
	r := k.Run(ctx, "", "version", "--client", "-o", "json")
	if r.Err != nil {
		return "", fmt.Errorf("%s", r)
	}
	const key = `"gitVersion": "`
	i := strings.Index(r.Stdout, key)
	if i < 0 {
		return "", fmt.Errorf("no gitVersion in %q", r.Stdout)
	}
	rest := r.Stdout[i+len(key):]
	return rest[:strings.IndexByte(rest, '"')], nil
}
