package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned"
	"github.com/etcdaas/etcdaas/test/e2e/framework"
)

const (
	controllerNamespace = "e2e-fault-controller"
	growName            = "grow"
)

// localState is the part of the local backend's state.json the test reads: the members it
// recorded and the ordinal the next one gets.
type localState struct {
	NextOrdinal int           `json:"nextOrdinal"`
	Members     []localMember `json:"members"`
}

// localMember is one member in state.json: its name and phase (joining, learner, voting,
// removing).
type localMember struct {
	Name  string `json:"name"`
	Phase string `json:"phase"`
}

func (s localState) String() string {
	var parts []string
	for _, m := range s.Members {
		parts = append(parts, m.Name+":"+m.Phase)
	}
	return fmt.Sprintf("members [%s], next ordinal %d", strings.Join(parts, " "), s.NextOrdinal)
}

func (s localState) inPhase(phases ...string) bool {
	return slices.ContainsFunc(s.Members, func(m localMember) bool { return slices.Contains(phases, m.Phase) })
}

func readLocalState(path string) (localState, error) {
	var st localState
	data, err := os.ReadFile(path)
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(data, &st)
}

// killControllerWhen polls until mid holds, then freezes etcdaas-controller (SIGSTOP on its
// process group, its embedded members included) and checks mid again on what it left on
// disk: when it still holds, the controller is killed (SIGKILL) in that state; when the
// controller moved on between the two looks, it is let go and the polling goes on. It
// returns the description mid gave at the kill.
func killControllerWhen(t *testing.T, c *framework.Cluster, timeout time.Duration, mid func() (bool, string)) string {
	t.Helper()
	p := c.Process("etcdaas-controller")
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if ok, _ := mid(); ok {
			if err := p.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			if ok, what := mid(); ok {
				p.Kill()
				return what
			}
			if err := p.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("the controller never reached the state to kill it in within %s", timeout)
	return ""
}

// midChange returns a mid for killControllerWhen: the instance's recorded state has a member
// in one of phases.
func midChange(path string, phases ...string) func() (bool, string) {
	return func() (bool, string) {
		st, err := readLocalState(path)
		if err != nil {
			return false, ""
		}
		return st.inPhase(phases...), st.String()
	}
}

// restartController starts etcdaas-controller again; the new one must first take over the
// Lease the killed one held.
func restartController(t *testing.T, c *framework.Cluster) time.Time {
	t.Helper()
	if err := c.StartEtcdaasController(); err != nil {
		t.Fatal(err)
	}
	return time.Now()
}

// testKill9Controller kills etcdaas-controller (local backend: the members run in its
// process and die with it) in the middle of a scale-up, of a scale-down and of a backup.
// The next controller finishes each: the etcd membership and the status agree, no member
// was added twice, no ordinal is used twice, and the backup is retried and never left half
// written.
func testKill9Controller(t *testing.T, c *framework.Cluster) {
	createNamespace(t, c, controllerNamespace)
	cs := etcdaasClient(t, c)
	_, err := cs.EtcdaasV1beta1().ETCDInstances(controllerNamespace).Create(t.Context(), &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: growName},
		Spec:       v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](1)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitRunning(t, c, controllerNamespace, growName, 3*time.Minute)
	instDir := filepath.Join(c.ControllerDataDir(), "instances", controllerNamespace, growName)
	statePath := filepath.Join(instDir, "state.json")
	var names []string // every member name ever seen, in order

	t.Run("ScaleUp", func(t *testing.T) {
		setReplicas(t, c, 3)
		// grow-1 is killed once added (a learner not yet promoted), grow-2 while it joins
		// (recorded, and added to the cluster or not).
		atLearner := killControllerWhen(t, c, 2*time.Minute, midChange(statePath, "learner"))
		restartController(t, c)
		atJoining := killControllerWhen(t, c, 2*time.Minute, func() (bool, string) {
			st, err := readLocalState(statePath)
			return err == nil && len(st.Members) == 3 && st.inPhase("joining", "learner"), st.String()
		})
		at := atLearner + ", then with " + atJoining
		restarted := restartController(t, c)
		inst := waitRunning(t, c, controllerNamespace, growName, 3*time.Minute)
		got := checkMembership(t, inst)
		names = appendNew(names, got)
		if want := []string{"grow-0", "grow-1", "grow-2"}; !slices.Equal(got, want) {
			t.Errorf("members %v after the scale-up, want %v", got, want)
		}
		t.Logf("killed with %s; the next controller finished the scale-up %s after its start", at, time.Since(restarted).Round(100*time.Millisecond))
	})
	t.Run("ScaleDown", func(t *testing.T) {
		setReplicas(t, c, 1)
		at := killControllerWhen(t, c, 2*time.Minute, midChange(statePath, "removing"))
		restarted := restartController(t, c)
		inst := waitRunning(t, c, controllerNamespace, growName, 3*time.Minute)
		got := checkMembership(t, inst)
		if want := []string{"grow-0"}; !slices.Equal(got, want) {
			t.Errorf("members %v after the scale-down, want %v", got, want)
		}
		for _, gone := range []string{"grow-1", "grow-2"} {
			if _, err := os.Stat(filepath.Join(instDir, gone)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the data of removed member %s is still there: %v", gone, err)
			}
		}
		t.Logf("killed with %s; the next controller finished the scale-down %s after its start", at, time.Since(restarted).Round(100*time.Millisecond))

		// The next member gets a new ordinal, not one of the removed members'.
		setReplicas(t, c, 2)
		inst = waitRunning(t, c, controllerNamespace, growName, 3*time.Minute)
		got = checkMembership(t, inst)
		if want := []string{"grow-0", "grow-3"}; !slices.Equal(got, want) {
			t.Errorf("members %v after scaling up again, want %v (ordinals are never reused)", got, want)
		}
		names = appendNew(names, got)
	})
	t.Run("Backup", func(t *testing.T) { testKill9MidBackup(t, c) })
	if dup := duplicates(names); len(dup) > 0 {
		t.Errorf("member names used twice: %v", dup)
	}
	if err := cs.EtcdaasV1beta1().ETCDInstances(controllerNamespace).Delete(t.Context(), growName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitGone(t, c, controllerNamespace, growName, 2*time.Minute)
}

func setReplicas(t *testing.T, c *framework.Cluster, n int) {
	t.Helper()
	patch := fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, n)
	_, err := etcdaasClient(t, c).EtcdaasV1beta1().ETCDInstances(controllerNamespace).Patch(t.Context(), growName, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// checkMembership compares the etcd cluster's own member list with the status: the same
// members, every one started and voting, none twice. It returns their names, sorted.
func checkMembership(t *testing.T, inst *v1beta1.ETCDInstance) []string {
	t.Helper()
	var endpoints, statusNames []string
	statusIDs := map[string]string{}
	for _, m := range inst.Status.Members {
		endpoints = append(endpoints, m.ClientURL)
		statusNames = append(statusNames, m.Name)
		statusIDs[m.Name] = m.ID
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	resp, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range resp.Members {
		id := fmt.Sprintf("%x", m.ID)
		switch {
		case m.Name == "":
			t.Errorf("member %s was added but never started: %v", id, m.PeerURLs)
		case m.IsLearner:
			t.Errorf("member %s (%s) is still a learner", m.Name, id)
		case statusIDs[m.Name] != id:
			t.Errorf("member %s has ID %s in etcd, %q in the status", m.Name, id, statusIDs[m.Name])
		}
		names = append(names, m.Name)
	}
	slices.Sort(names)
	slices.Sort(statusNames)
	if !slices.Equal(names, statusNames) {
		t.Errorf("etcd lists members %v, the status %v", names, statusNames)
	}
	if int32(len(names)) != *inst.Spec.Replicas || inst.Status.Replicas != *inst.Spec.Replicas {
		t.Errorf("%d members in etcd, status.replicas %d, spec.replicas %d", len(names), inst.Status.Replicas, *inst.Spec.Replicas)
	}
	return names
}

func appendNew(seen, names []string) []string {
	for _, n := range names {
		if !slices.Contains(seen, n) {
			seen = append(seen, n)
		}
	}
	return seen
}

func duplicates(names []string) []string {
	count := map[string]int{}
	var dup []string
	for _, n := range names {
		if count[n]++; count[n] == 2 {
			dup = append(dup, n)
		}
	}
	return dup
}

// testKill9MidBackup fills the instance so that a snapshot takes a while, schedules backups
// every minute to the local destination, and kills the controller while the first backup is
// being written. The backup is retried by the next controller; the destination then holds
// only whole backups, the status names one whose bytes match its recorded digest, and
// nothing of the interrupted attempt is left.
func testKill9MidBackup(t *testing.T, c *framework.Cluster) {
	cs := etcdaasClient(t, c)
	inst := waitRunning(t, c, controllerNamespace, growName, 3*time.Minute)
	fill(t, inst, 32<<20)
	patch := []byte(`{"spec":{"backup":{"schedule":"* * * * *","destination":{"local":{}}}}}`)
	if _, err := cs.EtcdaasV1beta1().ETCDInstances(controllerNamespace).Patch(t.Context(), growName, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	backupDir := filepath.Join(c.ControllerDataDir(), "backups", controllerNamespace, growName)
	at := killControllerWhen(t, c, 2*time.Minute, func() (bool, string) { return onlyPartialBackup(backupDir) })
	restarted := restartController(t, c)

	last := waitLastBackup(t, cs)
	entries, err := os.ReadDir(backupDir)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		files = append(files, e.Name())
	}
	if !slices.Contains(files, last.Key) {
		t.Fatalf("status names backup %s, the destination holds %v", last.Key, files)
	}
	for _, f := range files {
		if strings.HasSuffix(f, ".tmp") {
			t.Errorf("a partial backup was left in the destination: %s (all: %v)", f, files)
		}
	}
	data, err := os.ReadFile(filepath.Join(backupDir, last.Key))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != last.SHA256 || int64(len(data)) != last.SizeBytes {
		t.Errorf("backup %s: %d bytes with sha256 %s, the status says %d bytes with %s", last.Key, len(data), got, last.SizeBytes, last.SHA256)
	}
	report := snapshotStatus(t, c, filepath.Join(backupDir, last.Key))
	t.Logf("killed with %s; the next controller completed backup %s (%d bytes, revision %d) %s after its start; etcdutl: %s; destination: %v",
		at, last.Key, last.SizeBytes, last.Revision, time.Since(restarted).Round(100*time.Millisecond), strings.TrimSpace(report), files)
	// Nothing more is needed from the schedule.
	if _, err := cs.EtcdaasV1beta1().ETCDInstances(controllerNamespace).Patch(t.Context(), growName, types.MergePatchType, []byte(`{"spec":{"backup":null}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// onlyPartialBackup reports whether a backup is being written in backupDir (a .tmp file)
// while nothing else is there, and says what the directory holds.
func onlyPartialBackup(backupDir string) (bool, string) {
	entries, _ := os.ReadDir(backupDir)
	var partial, whole []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			partial = append(partial, e.Name())
		} else {
			whole = append(whole, e.Name())
		}
	}
	return len(partial) > 0 && len(whole) == 0, fmt.Sprintf("%v being written, nothing else in the destination", partial)
}

// waitLastBackup waits for the instance growName to report a backup, and returns it.
func waitLastBackup(t *testing.T, cs *versioned.Clientset) *v1beta1.BackupInfo {
	t.Helper()
	var done *v1beta1.ETCDInstance
	err := framework.Poll(t.Context(), 500*time.Millisecond, 3*time.Minute, "a backup after the kill", func(ctx context.Context) (bool, error) {
		got, err := cs.EtcdaasV1beta1().ETCDInstances(controllerNamespace).Get(ctx, growName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		done = got
		b := got.Status.Backup
		if b == nil || b.LastBackup == nil {
			return false, fmt.Errorf("status.backup %+v", b)
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return done.Status.Backup.LastBackup
}

// fill writes size bytes of values into the instance, so that its snapshot takes long
// enough to be caught in the middle.
func fill(t *testing.T, inst *v1beta1.ETCDInstance, size int) {
	t.Helper()
	var endpoints []string
	for _, m := range inst.Status.Members {
		endpoints = append(endpoints, m.ClientURL)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	value := strings.Repeat("x", 256<<10)
	for i := 0; i*len(value) < size; i++ {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		_, err := cli.Put(ctx, fmt.Sprintf("/fill/%04d", i), value)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
}
