package monitoring

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/component-base/metrics/legacyregistry"
	"sigs.k8s.io/yaml"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/metrics"
	"github.com/etcdaas/etcdaas/test/e2e/framework"
	"github.com/etcdaas/etcdaas/test/testenv"
)

// rulesTest is the part of a promtool rules test file this test reads.
type rulesTest struct {
	Tests []struct {
		AlertRuleTest []struct {
			Alertname string           `json:"alertname"`
			ExpAlerts []map[string]any `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

// TestPrometheusRules checks the monitoring component's PrometheusRule: its groups pass
// `promtool check rules` (with its lint fatal), every alert has a severity and a summary and
// description naming what it is about, fires in prometheusrule_test.yaml (`promtool test
// rules`: on the series that should fire it, not on healthy ones), and uses only metrics
// etcdaas-controller serves.
func TestPrometheusRules(t *testing.T) {
	promtool := framework.RequireTools(t, framework.Promtool)[framework.Promtool]
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	component := filepath.Join(root, "deploy", "components", "monitoring")
	var pr PrometheusRule
	readStrict(t, filepath.Join(component, "prometheusrule.yaml"), &pr)
	if pr.Kind != "PrometheusRule" || pr.APIVersion != "monitoring.coreos.com/v1" || len(pr.Spec.Groups) == 0 {
		t.Fatalf("prometheusrule.yaml is a %s %s with %d groups", pr.APIVersion, pr.Kind, len(pr.Spec.Groups))
	}

	dir := t.TempDir()
	rules, err := yaml.Marshal(map[string]any{"groups": pr.Spec.Groups})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "rules.yaml"), rules)
	tests, err := os.ReadFile(filepath.Join(component, "prometheusrule_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "rules_test.yaml"), tests)

	t.Run("Annotations", func(t *testing.T) { testRuleAnnotations(t, pr.Spec.Groups) })
	t.Run("EveryAlertFiresInATest", func(t *testing.T) { testEveryAlertFires(t, pr.Spec.Groups, tests) })
	t.Run("MetricsExist", func(t *testing.T) { testRuleMetricsExist(t, pr.Spec.Groups) })
	t.Run("PromtoolCheckRules", func(t *testing.T) {
		runPromtool(t, promtool, dir, "check", "rules", "--lint=all", "--lint-fatal", "rules.yaml")
	})
	t.Run("PromtoolTestRules", func(t *testing.T) { runPromtool(t, promtool, dir, "test", "rules", "rules_test.yaml") })
}

func readStrict(t *testing.T, path string, into any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// runPromtool runs promtool in dir and fails the test with its output when it fails.
func runPromtool(t *testing.T, promtool, dir string, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), promtool, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
}

// testRuleAnnotations checks that every alert says how bad it is and, in its summary and
// description, which instance (and member) it is about.
func testRuleAnnotations(t *testing.T, groups []RuleGroup) {
	for _, g := range groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %s: a rule that is not an alert (%q)", g.Name, r.Expr)
				continue
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s: severity %q, want warning or critical", r.Alert, s)
			}
			if _, err := time.ParseDuration(r.For); err != nil {
				t.Errorf("%s: for %q: every alert waits before it fires (%v)", r.Alert, r.For, err)
			}
			var about []string
			if strings.Contains(r.Expr, "etcdaas_instance_") || strings.Contains(r.Expr, "etcdaas_backup_") || strings.Contains(r.Expr, "etcdaas_member_") {
				about = append(about, "$labels.namespace", "$labels.name")
			}
			if strings.Contains(r.Expr, "etcdaas_member_") {
				about = append(about, "$labels.member")
			}
			for _, key := range []string{"summary", "description"} {
				text := r.Annotations[key]
				if text == "" {
					t.Errorf("%s: no %s", r.Alert, key)
				}
				for _, label := range about {
					if !strings.Contains(text, label) {
						t.Errorf("%s: the %s does not name %s: %q", r.Alert, key, label, text)
					}
				}
			}
		}
	}
}

// testEveryAlertFires checks that the rules test file has, for every alert, a case in which
// it fires: an alert nobody saw fire may never fire.
func testEveryAlertFires(t *testing.T, groups []RuleGroup, testFile []byte) {
	var rt rulesTest
	if err := yaml.Unmarshal(testFile, &rt); err != nil {
		t.Fatal(err)
	}
	fires := map[string]bool{}
	for _, tc := range rt.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			}
		}
	}
	for _, g := range groups {
		for _, r := range g.Rules {
			if !fires[r.Alert] {
				t.Errorf("%s fires in no case of prometheusrule_test.yaml", r.Alert)
			}
		}
	}
}

var metricName = regexp.MustCompile(`\betcdaas_[a-z_]+\b`)

// testRuleMetricsExist checks that every etcdaas metric the rules use is one
// etcdaas-controller serves (once an instance was synced and backed up on a schedule): a
// renamed metric would leave its alert silent forever.
func testRuleMetricsExist(t *testing.T, groups []RuleGroup) {
	metrics.Register()
	const ns, name = "e2e-rules", "db"
	defer metrics.ForgetInstance(ns, name)
	metrics.ObserveMembers(ns, name, []v1beta1.MemberStatus{{Name: "db-0", Ready: true, Leader: true, DBSize: 4096, DBSizeInUse: 2048}}, 2<<30)
	metrics.ObserveBackupSchedule(ns, name, time.Now().Add(time.Hour))
	metrics.ObserveBackupSuccess(ns, name, time.Now(), time.Second, 4096)
	metrics.ObserveBackupFailure(ns, name)
	metrics.ObserveReconcile(metrics.ResultError, time.Millisecond)
	families, err := legacyregistry.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{}
	for _, f := range families {
		served[f.GetName()] = true
	}
	for _, g := range groups {
		for _, r := range g.Rules {
			for _, m := range metricName.FindAllString(r.Expr, -1) {
				if !served[m] {
					t.Errorf("%s uses %s, which etcdaas-controller does not serve", r.Alert, m)
				}
			}
		}
	}
	if t.Failed() {
		names := make([]string, 0, len(served))
		for n := range served {
			if strings.HasPrefix(n, "etcdaas_") {
				names = append(names, n)
			}
		}
		slices.Sort(names)
		t.Logf("served: %s", strings.Join(names, " "))
	}
}
