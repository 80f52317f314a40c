package node

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
)

// inNamespaceEnv marks the test binary re-run inside its private mount namespace.
const inNamespaceEnv = "ETCDAAS_CLUSTER_TIER_MOUNT_NS"

// Unsupported returns why the tier cannot run here (not root, no network namespaces), or
// "" when it can.
func Unsupported() string {
	if os.Geteuid() != 0 {
		return "the cluster tier runs a kubelet, containerd and a bridge: it needs root"
	}
	if out, err := exec.Command("unshare", "--net", "true").CombinedOutput(); err != nil {
		return fmt.Sprintf("the cluster tier needs network namespaces (unshare --net: %v: %s)", err, out)
	}
	return ""
}

// Main is TestMain of the tier's test packages. As root it runs the tests in a private
// mount namespace whose /etc/resolv.conf names only the cluster's DNS Service, so that no
// process of the run (kube-apiserver, the kubelet, kubectl, the tests) can ever send a
// query to the host's resolver, and every mount the node makes disappears with the run.
// cleanups run after the tests.
func Main(m *testing.M, cleanups ...func()) {
	exit := func(code int) {
		for _, c := range cleanups {
			c()
		}
		os.Exit(code)
	}
	if Unsupported() != "" {
		exit(m.Run())
	}
	if os.Getenv(inNamespaceEnv) == "" {
		os.Exit(rerunInMountNamespace())
	}
	if err := isolateResolver(); err != nil {
		fmt.Fprintf(os.Stderr, "cluster tier: %v\n", err)
		exit(1)
	}
	exit(m.Run())
}

// rerunInMountNamespace runs this test binary again, with the same arguments, in a new
// mount namespace (with private propagation), forwarding termination signals; it returns
// the exit code.
func rerunInMountNamespace() int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "cluster tier: %v\n", err)
		return 1
	}
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Env = append(os.Environ(), inNamespaceEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "cluster tier: entering a private mount namespace: %v\n", err)
		return 1
	}
	go func() {
		for s := range sigs {
			_ = cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	signal.Stop(sigs)
	if exit, ok := err.(*exec.ExitError); ok {
		return exit.ExitCode()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "cluster tier: %v\n", err)
		return 1
	}
	return 0
}

// resolvPath is the resolv.conf of the tier's mount namespace. It is replaced (written
// aside, then renamed) rather than rewritten, so that a run's bind mount keeps its file.
const resolvPath = "/run/etcdaas-cluster-tier.resolv.conf"

// isolateResolver bind-mounts, in this mount namespace only, a resolv.conf naming only the
// cluster's DNS Service over /etc/resolv.conf.
func isolateResolver() error {
	content := "# cluster tier: only the cluster's DNS; nothing is forwarded off the machine\nnameserver " + DNSServiceIP + "\noptions timeout:1 attempts:1\n"
	tmp, err := os.CreateTemp(filepath.Dir(resolvPath), filepath.Base(resolvPath)+".")
	if err != nil {
		return err
	}
	_, werr := tmp.WriteString(content)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr, os.Chmod(tmp.Name(), 0o644)); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), resolvPath); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	target, err := filepath.EvalSymlinks("/etc/resolv.conf")
	if err != nil {
		return err
	}
	if err := syscall.Mount(resolvPath, target, "", syscall.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind-mounting %s over %s: %w", resolvPath, target, err)
	}
	return nil
}
