package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/etcdaas/etcdaas/test/e2e/framework"
)

// auditPolicy records etcdaas.dev requests at the Metadata level, once complete.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  resources:
  - group: etcdaas.dev
- level: None
`

// auditArgs writes the audit policy and returns etcdaas-apiserver's audit flags and the log's path.
func auditArgs(t *testing.T) ([]string, string) {
	t.Helper()
	dir := t.TempDir()
	policy := filepath.Join(dir, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(dir, "audit.log")
	return []string{"--audit-policy-file=" + policy, "--audit-log-path=" + log}, log
}

// testAuditUser checks that a request an admin makes as another user (kubectl --as) reaches
// etcdaas-apiserver as that user: its audit event names the impersonated user and the
// RoleBinding that allowed it, as kube-apiserver records for its own resources.
func testAuditUser(t *testing.T, c *framework.Cluster, auditLog string) {
	const ns, user = "e2e-audit", "e2e-audit-editor"
	createNamespace(t, c, ns)
	bindClusterRole(t, c, ns, user, "edit")
	k := c.AdminKubectl()
	pollKubectl(t, k, time.Minute, nil, "auth", "can-i", "create", "etcdinstances.etcdaas.dev", "-n", ns, "--as="+user)
	mustRun(t, k, "apiVersion: etcdaas.dev/v1beta1\nkind: ETCDInstance\nmetadata:\n  name: audited\nspec:\n  replicas: 1\n", "create", "-n", ns, "--as="+user, "-f", "-")
	var ev *auditv1.Event
	err := framework.Poll(t.Context(), 200*time.Millisecond, 30*time.Second, "the audit event of the creation", func(_ context.Context) (bool, error) {
		ev = findAuditEvent(t, auditLog, func(e *auditv1.Event) bool {
			return e.Verb == "create" && e.ObjectRef != nil && e.ObjectRef.Namespace == ns && e.ObjectRef.Name == "audited" && e.ObjectRef.Subresource == ""
		})
		return ev != nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if ev.User.Username != user || ev.ResponseStatus == nil || ev.ResponseStatus.Code != 201 {
		t.Errorf("audit event of a creation as %s: user %q, response %v", user, ev.User.Username, ev.ResponseStatus)
	}
	if d, r := ev.Annotations["authorization.k8s.io/decision"], ev.Annotations["authorization.k8s.io/reason"]; d != "allow" || !strings.Contains(r, user+"-edit") {
		t.Errorf("audit annotations: decision %q reason %q, want allow by the RoleBinding %s-edit", d, r, user)
	}
}

// findAuditEvent returns the first event of the audit log that match accepts.
func findAuditEvent(t *testing.T, path string, match func(*auditv1.Event) bool) *auditv1.Event {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e auditv1.Event
		if json.Unmarshal(sc.Bytes(), &e) == nil && match(&e) {
			return &e
		}
	}
	return nil
}
