package server

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/etcdaas/etcdaas/pkg/watchbuffer"
)

func TestWatchBufferSizeFlag(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		want    int
		invalid bool
	}{
		{args: nil, want: watchbuffer.DefaultSize},
		{args: []string{"--watch-buffer-size=0"}, want: 0},
		{args: []string{"--watch-buffer-size=5000"}, want: 5000},
		{args: []string{"--watch-buffer-size=-1"}, want: -1, invalid: true},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			o := NewOptions()
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			o.AddFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			if o.WatchBufferSize != tc.want {
				t.Fatalf("WatchBufferSize = %d, want %d", o.WatchBufferSize, tc.want)
			}
			errs := o.validateWatchBuffer()
			if tc.invalid != (len(errs) > 0) {
				t.Fatalf("validation errors %v, want invalid=%v", errs, tc.invalid)
			}
			if tc.invalid && !strings.Contains(errs[0].Error(), "--watch-buffer-size") {
				t.Fatalf("error %q does not name the flag", errs[0])
			}
		})
	}
}

// TestStandaloneRefusesFlagsItWouldIgnore checks that --standalone refuses, naming them, the
// flags of the option sets it replaces with its own (authentication by its CA, authorization
// of every holder of its certificates, no admission, no kube-apiserver): the server used to
// start and silently ignore them, even a --client-ca-file that does not exist.
func TestStandaloneRefusesFlagsItWouldIgnore(t *testing.T) {
	for _, flag := range []string{
		"--client-ca-file=/nonexistent/ca.crt",
		"--requestheader-client-ca-file=/nonexistent/front-proxy-ca.crt",
		"--authentication-kubeconfig=/nonexistent/kubeconfig",
		"--authorization-kubeconfig=/nonexistent/kubeconfig",
		"--authorization-always-allow-paths=/",
		"--enable-admission-plugins=NamespaceLifecycle",
		"--admission-control-config-file=/nonexistent/admission.yaml",
		"--kubeconfig=/nonexistent/kubeconfig",
		"--backup-local-data-dir=/var/lib/etcdaas",
		"--alternate-dns=etcdaas.example",
	} {
		t.Run(flag, func(t *testing.T) {
			err := parseAndValidate(t, "--standalone", "--data-dir", t.TempDir(), flag)
			name := strings.SplitN(flag, "=", 2)[0]
			if err == nil || !strings.Contains(err.Error(), name+" cannot be used with --standalone") {
				t.Fatalf("err = %v, want one saying %s cannot be used with --standalone", err, name)
			}
		})
	}
	// The same flags stay valid in aggregated mode, and standalone mode without them is valid.
	if err := parseAndValidate(t, "--standalone", "--data-dir", t.TempDir()); err != nil {
		t.Fatalf("standalone without those flags: %v", err)
	}
	if err := parseAndValidate(t, "--etcd-servers=https://127.0.0.1:2379", "--authorization-always-allow-paths=/healthz"); err != nil {
		t.Fatalf("aggregated mode with --authorization-always-allow-paths: %v", err)
	}
}

// parseAndValidate parses args as etcdaas-apiserver's flags, then completes and validates them.
func parseAndValidate(t *testing.T, args ...string) error {
	t.Helper()
	o := NewOptions()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	if err := o.Complete(fs); err != nil {
		return err
	}
	return o.Validate()
}

// TestStandaloneBackupDirFlag: --backup-dir puts a standalone server's local backups where it
// says (a disk other than the members' data), for the in-process controller's writes and for
// what etcdinstances/backups lists and spec.restoreFrom reads; the default stays
// --data-dir's backups/. The flag was ignored in standalone mode.
func TestStandaloneBackupDirFlag(t *testing.T) {
	dataDir, backups := t.TempDir(), t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--standalone", "--data-dir", dataDir, "--backup-dir", backups}, backups},
		{[]string{"--standalone", "--data-dir", dataDir}, StandaloneBackupDir(dataDir)},
	} {
		o := NewOptions()
		fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
		o.AddFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		if err := o.Complete(fs); err != nil {
			t.Fatal(err)
		}
		if err := o.Validate(); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		extra, err := o.standaloneExtraConfig()
		if err != nil {
			t.Fatal(err)
		}
		if got := extra.BackupResolver.LocalRoot; got != tc.want {
			t.Errorf("%v: local backups in %s, want %s", tc.args, got, tc.want)
		}
	}
}

// TestAggregatedRefusesStandaloneFlags checks that the aggregated mode (no --standalone)
// refuses, naming them, the flags only standalone mode reads: the server used to start
// and silently ignore them, so `--data-dir DIR` without --standalone ran an aggregated
// server that stored nothing under DIR.
func TestAggregatedRefusesStandaloneFlags(t *testing.T) {
	for _, flag := range []string{
		"--data-dir=/var/lib/etcdaas",
		"--controller=false",
		"--standalone-etcd-client-port=2379",
		"--standalone-etcd-peer-port=2380",
		"--member-repair-grace-period=1m",
		"--standalone=false --data-dir=/var/lib/etcdaas",
	} {
		t.Run(flag, func(t *testing.T) {
			args := append([]string{"--etcd-servers=https://127.0.0.1:2379"}, strings.Fields(flag)...)
			err := parseAndValidate(t, args...)
			last := strings.Fields(flag)
			name := strings.SplitN(last[len(last)-1], "=", 2)[0]
			if err == nil || !strings.Contains(err.Error(), name+" can be used only with --standalone") {
				t.Fatalf("err = %v, want one saying %s can be used only with --standalone", err, name)
			}
		})
	}
	// Every flag is named in one error.
	err := parseAndValidate(t, "--etcd-servers=https://127.0.0.1:2379", "--data-dir=/d", "--controller=false")
	if err == nil || !strings.Contains(err.Error(), "--controller, --data-dir can be used only with --standalone") {
		t.Fatalf("err = %v, want one naming --controller and --data-dir", err)
	}
	// --backup-dir serves both modes, and the standalone flags stay valid with --standalone.
	if err := parseAndValidate(t, "--etcd-servers=https://127.0.0.1:2379", "--backup-dir=/var/lib/etcdaas-backups"); err != nil {
		t.Fatalf("aggregated mode with --backup-dir: %v", err)
	}
	if err := parseAndValidate(t, "--standalone", "--data-dir", t.TempDir(), "--controller=false",
		"--standalone-etcd-client-port=2379", "--standalone-etcd-peer-port=2380", "--member-repair-grace-period=1m"); err != nil {
		t.Fatalf("standalone with its own flags: %v", err)
	}
}
