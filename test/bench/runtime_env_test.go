package bench

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// Settings of etcdaas-apiserver's Go runtime in the benchmarks that start the control plane
// (environment variables of the benchmark, handed to etcdaas-apiserver alone: the benchmark's
// clients, kube-apiserver and etcd keep the defaults).
const (
	// APIServerGOGCEnv is etcdaas-apiserver's GOGC: the garbage collector's target heap
	// growth in percent, or "off" (unset: the runtime's default, 100).
	APIServerGOGCEnv = "ETCDAAS_BENCH_APISERVER_GOGC"
	// APIServerMemoryLimitEnv is etcdaas-apiserver's GOMEMLIMIT: the runtime's soft memory
	// limit, in bytes or with a unit (B, KiB, MiB, GiB, TiB), or "off" (unset: no limit).
	APIServerMemoryLimitEnv = "ETCDAAS_BENCH_APISERVER_GOMEMLIMIT"
)

var (
	// gogcValue is what the Go runtime reads from GOGC.
	gogcValue = regexp.MustCompile(`^(off|[0-9]+)$`)
	// memoryLimitValue is what the Go runtime reads from GOMEMLIMIT.
	memoryLimitValue = regexp.MustCompile(`^(off|[0-9]+(B|KiB|MiB|GiB|TiB)?)$`)
)

// apiServerRuntimeEnv reads APIServerGOGCEnv and APIServerMemoryLimitEnv into the
// environment (KEY=value) of etcdaas-apiserver; nil when neither is set.
func apiServerRuntimeEnv(b testing.TB) []string {
	b.Helper()
	env, err := runtimeEnv(os.Getenv(APIServerGOGCEnv), os.Getenv(APIServerMemoryLimitEnv))
	if err != nil {
		b.Fatal(err)
	}
	return env
}

// runtimeEnv turns a GOGC and a GOMEMLIMIT value ("" for the runtime's default) into
// environment entries, refusing any other spelling than a non-negative number or off for
// GOGC and bytes with an optional unit or off for GOMEMLIMIT (the runtime ignores a malformed
// value silently, which would measure the defaults under another name).
func runtimeEnv(gogc, memoryLimit string) ([]string, error) {
	var env []string
	if gogc != "" {
		if !gogcValue.MatchString(gogc) {
			return nil, fmt.Errorf("%s=%q: want a percentage (a number such as 100) or off", APIServerGOGCEnv, gogc)
		}
		env = append(env, "GOGC="+gogc)
	}
	if memoryLimit != "" {
		if !memoryLimitValue.MatchString(memoryLimit) {
			return nil, fmt.Errorf("%s=%q: want bytes, optionally with a unit (B, KiB, MiB, GiB, TiB), such as 512MiB, or off", APIServerMemoryLimitEnv, memoryLimit)
		}
		env = append(env, "GOMEMLIMIT="+memoryLimit)
	}
	return env, nil
}

// describeRuntimeEnv is the report's line for etcdaas-apiserver's runtime settings.
func describeRuntimeEnv(env []string) string {
	if len(env) == 0 {
		return "the Go runtime's defaults (GOGC=100, no GOMEMLIMIT)"
	}
	return strings.Join(env, " ")
}

// TestRuntimeEnv checks the benchmark's GOGC and GOMEMLIMIT settings of etcdaas-apiserver:
// unset gives no environment (the runtime's defaults), values the Go runtime understands
// are passed on as they are, and malformed values are refused before the control plane starts.
func TestRuntimeEnv(t *testing.T) {
	for _, tc := range []struct {
		gogc, limit string
		want        []string
		wantErr     string
	}{
		{want: nil},
		{gogc: "200", want: []string{"GOGC=200"}},
		{gogc: "off", limit: "384MiB", want: []string{"GOGC=off", "GOMEMLIMIT=384MiB"}},
		{limit: "1073741824", want: []string{"GOMEMLIMIT=1073741824"}},
		{gogc: "-1", wantErr: APIServerGOGCEnv},
		{gogc: "200%", wantErr: APIServerGOGCEnv},
		{limit: "384M", wantErr: APIServerMemoryLimitEnv},
		{gogc: "100", limit: "1.5GiB", wantErr: APIServerMemoryLimitEnv},
	} {
		got, err := runtimeEnv(tc.gogc, tc.limit)
		name := strconv.Quote(tc.gogc) + "," + strconv.Quote(tc.limit)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: error %v, want one naming %s", name, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("%s: %q, want %q", name, got, tc.want)
		}
	}
}
