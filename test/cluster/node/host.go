package node

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Addresses and names of the node. They are fixed: the tier takes a host-wide lock, so one
// run at a time owns them.
const (
	// BridgeName is the Linux bridge the pods attach to.
	BridgeName = "etcdaasbr0"
	// NodeIP is the bridge's address: the node's InternalIP, where kube-apiserver, the
	// kubelet and CoreDNS listen.
	NodeIP = "10.244.0.1"
	// PodCIDR is the node's pod range (allocated by node-ipam) and the CNI bridge's subnet.
	PodCIDR = "10.244.0.0/24"
	// ClusterCIDR is the range node-ipam allocates pod ranges from.
	ClusterCIDR = "10.244.0.0/16"
	// ServiceCIDR is the ClusterIP range; it is routed to the bridge, never off the machine.
	ServiceCIDR = "10.96.0.0/16"
	// KubernetesServiceIP is the ClusterIP of the kubernetes Service.
	KubernetesServiceIP = "10.96.0.1"
	// DNSServiceIP is the ClusterIP of CoreDNS (Service kube-system/kube-dns).
	DNSServiceIP = "10.96.0.10"
	// NodeName is the node's name (the kubelet's --hostname-override).
	NodeName = "etcdaas-node"
	// ClusterDomain is the cluster's DNS domain.
	ClusterDomain = "cluster.local"

	// LockPath serializes runs of the tier on this host.
	LockPath = "/run/etcdaas-cluster-tier.lock"
	// statePath records what a run changed on the host, so that the next run's sweep can
	// undo it when the run died before its cleanup.
	statePath = "/run/etcdaas-cluster-tier.state"
	// scratchPrefix names the runs' work directories under the temporary directory.
	scratchPrefix = "etcdaas-cluster-"
)

// kubeletSysctls are the host sysctls the kubelet sets at every start; the harness puts
// back the values it found.
var kubeletSysctls = []string{"vm.overcommit_memory", "kernel.panic", "kernel.panic_on_oops"}

// Paths the kubelet and containerd create outside their root directories. None exists on
// a host that never ran a kubelet; the harness removes only those it did not find.
var outsidePaths = []string{
	"/var/lib/kubelet/device-plugins",
	"/var/lib/kubelet",
	"/var/log/containers",
	"/var/log/pods",
	"/var/lib/cni/results",
	"/var/lib/cni",
	"/run/containerd/s",
	"/run/containerd",
	"/var/run/netns",
}

// HostLock is the host-wide lock of the tier.
type HostLock struct{ f *os.File }

// LockHost takes the tier's host-wide lock, waiting up to timeout for another run to end.
func LockHost(timeout time.Duration) (*HostLock, error) {
	f, err := os.OpenFile(LockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return &HostLock{f: f}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("locking %s (another run of the cluster tier?): %w", LockPath, err)
		}
		time.Sleep(time.Second)
	}
}

// Unlock releases the lock.
func (l *HostLock) Unlock() {
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
}

// hostState is what a run changed on the host, written to statePath before the change.
type hostState struct {
	// Sysctls maps each sysctl to the value found before the run.
	Sysctls map[string]string
	// Created lists the outside paths that did not exist before the run.
	Created []string
	// Scratch is the run's work directory.
	Scratch string
}

func (s hostState) encode() string {
	var b strings.Builder
	fmt.Fprintf(&b, "scratch %s\n", s.Scratch)
	for k, v := range s.Sysctls {
		fmt.Fprintf(&b, "sysctl %s %s\n", k, v)
	}
	for _, p := range s.Created {
		fmt.Fprintf(&b, "created %s\n", p)
	}
	return b.String()
}

func decodeHostState(data string) hostState {
	s := hostState{Sysctls: map[string]string{}}
	for _, line := range strings.Split(data, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "scratch":
			s.Scratch = f[1]
		case len(f) == 3 && f[0] == "sysctl":
			s.Sysctls[f[1]] = f[2]
		case len(f) == 2 && f[0] == "created":
			s.Created = append(s.Created, f[1])
		}
	}
	return s
}

// recordHostState saves the sysctls and the absent outside paths before a run changes them.
func recordHostState(scratch string) (hostState, error) {
	s := hostState{Sysctls: map[string]string{}, Scratch: scratch}
	for _, name := range kubeletSysctls {
		v, err := readSysctl(name)
		if err != nil {
			return s, err
		}
		s.Sysctls[name] = v
	}
	for _, p := range outsidePaths {
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			s.Created = append(s.Created, p)
		}
	}
	return s, os.WriteFile(statePath, []byte(s.encode()), 0o600)
}

func sysctlPath(name string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(name, ".", "/"))
}

func readSysctl(name string) (string, error) {
	b, err := os.ReadFile(sysctlPath(name))
	return strings.TrimSpace(string(b)), err
}

func writeSysctl(name, value string) error {
	return os.WriteFile(sysctlPath(name), []byte(value), 0o644)
}

// restoreSysctls puts back the values found before the run.
func (s hostState) restoreSysctls() error {
	var errs []error
	for name, v := range s.Sysctls {
		if cur, err := readSysctl(name); err == nil && cur == v {
			continue
		}
		errs = append(errs, writeSysctl(name, v))
	}
	return errors.Join(errs...)
}

// run runs a host command, returning its output in the error.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// setUpBridge creates the pods' bridge with NodeIP, routes ServiceCIDR to it (ClusterIPs
// never leave through another interface) and turns forwarding on for the bridge only.
func setUpBridge() error {
	steps := [][]string{
		{"ip", "link", "add", BridgeName, "type", "bridge"},
		{"ip", "addr", "add", NodeIP + "/24", "dev", BridgeName},
		{"ip", "link", "set", BridgeName, "up"},
		{"ip", "route", "add", ServiceCIDR, "dev", BridgeName, "src", NodeIP},
	}
	for _, s := range steps {
		if err := run(s[0], s[1:]...); err != nil {
			return err
		}
	}
	// Pod -> ClusterIP -> pod on the same bridge; every other interface keeps its setting.
	return writeSysctl("net.ipv4.conf."+BridgeName+".forwarding", "1")
}

// tearDownHost undoes everything a run changes on the host outside its work directory:
// kube-proxy's nftables tables, mounts under the work directory, the kubelet's cgroups, the
// bridge and its route, the sysctls and the outside paths the run created. nft is the
// unpacked Debian nft. Every step runs; the errors are joined.
func tearDownHost(s hostState, nft nftRunner) error {
	var errs []error
	for _, family := range []string{"ip", "ip6"} {
		// Absent when kube-proxy never started: not an error.
		if nft.tableExists(family, "kube-proxy") {
			errs = append(errs, nft.run("delete", "table", family, "kube-proxy"))
		}
	}
	if s.Scratch != "" {
		errs = append(errs, unmountUnder(s.Scratch))
	}
	errs = append(errs, removeKubeletCgroups())
	if _, err := os.Stat("/sys/class/net/" + BridgeName); err == nil {
		// Deleting the link removes its address and routes.
		errs = append(errs, run("ip", "link", "del", BridgeName))
	}
	errs = append(errs, s.restoreSysctls())
	for _, p := range s.Created {
		if err := unmountUnder(p); err != nil {
			errs = append(errs, err)
		}
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// unmountUnder unmounts every mount point at or under dir, deepest first.
func unmountUnder(dir string) error {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var targets []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMountPath(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			targets = append(targets, mp)
		}
	}
	var errs []error
	for i := len(targets) - 1; i >= 0; i-- {
		if err := syscall.Unmount(targets[i], 0); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			if err := syscall.Unmount(targets[i], syscall.MNT_DETACH); err != nil {
				errs = append(errs, fmt.Errorf("unmounting %s: %w", targets[i], err))
			}
		}
	}
	return errors.Join(errs...)
}

// unescapeMountPath decodes the octal escapes (\040 for a space) of /proc/self/mountinfo.
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(byte(c))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// removeKubeletCgroups removes the kubepods cgroup trees the kubelet creates in every
// hierarchy (cgroupfs driver), deepest first. Cgroups still holding a process stay and
// are reported.
func removeKubeletCgroups() error {
	roots, err := filepath.Glob("/sys/fs/cgroup/*/kubepods")
	if err != nil {
		return err
	}
	if st, err := os.Stat("/sys/fs/cgroup/kubepods"); err == nil && st.IsDir() {
		roots = append(roots, "/sys/fs/cgroup/kubepods")
	}
	var errs []error
	for _, root := range roots {
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := syscall.Rmdir(dirs[i]); err != nil && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("removing cgroup %s: %w", dirs[i], err))
			}
		}
	}
	return errors.Join(errs...)
}

// sweepStaleState undoes what a previous run left behind when it died before its cleanup:
// it kills that run's containerd shims and containers, then tears the host state down
// from the state file that run wrote.
func sweepStaleState(nft nftRunner) error {
	data, err := os.ReadFile(statePath)
	if errors.Is(err, os.ErrNotExist) {
		// No record: a previous run cleaned up. The bridge alone may still exist when a run
		// died between creating it and writing the state; remove it too.
		return tearDownHost(hostState{}, nft)
	}
	if err != nil {
		return err
	}
	s := decodeHostState(string(data))
	if s.Scratch != "" {
		killShims(filepath.Join(s.Scratch, "containerd", "state"))
	}
	if err := tearDownHost(s, nft); err != nil {
		return err
	}
	if s.Scratch != "" {
		if err := os.RemoveAll(s.Scratch); err != nil {
			return err
		}
	}
	return os.Remove(statePath)
}

// killShims kills the containers and the containerd shims recorded in a containerd state
// directory (the shims outlive containerd: they are re-parented to init).
func killShims(stateDir string) {
	pids, _ := filepath.Glob(filepath.Join(stateDir, "io.containerd.runtime.v2.task", "*", "*", "init.pid"))
	for _, f := range pids {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var pid int
		if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%d", &pid); err != nil || pid <= 1 {
			continue
		}
		if ppid := parentPid(pid); ppid > 1 {
			_ = syscall.Kill(ppid, syscall.SIGKILL)
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

func parentPid(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// pid (comm) state ppid ...; comm may hold spaces, so start after its ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	var state string
	var ppid int
	if _, err := fmt.Sscanf(s[i+1:], " %s %d", &state, &ppid); err != nil {
		return 0
	}
	return ppid
}
