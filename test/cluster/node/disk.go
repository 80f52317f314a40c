package node

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// tierDiskNeed is the disk space a run of the tier writes at most: images imported into
// containerd and unpacked, the members' volumes, logs (a failed run's work directory grew to
// about 4.3 GiB before its heavy parts were removed on failure).
const tierDiskNeed = 6 << 30

// evictionFreePercent is the share of the node's file system the kubelet keeps free
// (evictionHard nodefs.available and imagefs.available): below it, it evicts pods, CoreDNS
// among them, and every scenario then fails on names that no longer resolve.
const evictionFreePercent = 1

// requireDiskRoom checks that the file system holding dir has room for a run of the tier
// above the kubelet's eviction threshold.
func requireDiskRoom(dir string) error {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		return fmt.Errorf("reading the free space of %s: %w", dir, err)
	}
	return checkDiskRoom(dir, fs.Blocks*uint64(fs.Bsize), fs.Bavail*uint64(fs.Bsize))
}

// checkDiskRoom is requireDiskRoom for a file system of size bytes with avail available.
func checkDiskRoom(dir string, size, avail uint64) error {
	need := size*evictionFreePercent/100 + tierDiskNeed
	if avail < need {
		return fmt.Errorf("%s has %.1f GiB free; the cluster tier needs %.1f GiB (%.1f GiB it writes, and the %d%% the kubelet keeps free before it evicts pods): free some space, such as the work directories of failed runs (%s)",
			dir, gib(avail), gib(need), gib(tierDiskNeed), evictionFreePercent, filepath.Join(dir, scratchPrefix+"*"))
	}
	return nil
}

func gib(n uint64) float64 { return float64(n) / (1 << 30) }

// heavyWorkDirs are the parts of a work directory that hold images, container file systems
// and volumes: a failed run removes them and keeps the logs and configuration.
var heavyWorkDirs = []string{"containerd", "images", "volumes", "kubelet"}

// trimWorkDir removes the heavy parts of a failed run's work directory dir, so that failed
// runs do not fill the disk (and make the next run's kubelet evict its pods).
func trimWorkDir(dir string) error {
	for _, sub := range heavyWorkDirs {
		if err := os.RemoveAll(filepath.Join(dir, sub)); err != nil {
			return err
		}
	}
	return nil
}
