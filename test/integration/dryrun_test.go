package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend/local"
)

// TestActionSubresourcesRefuseDryRun: a dry run of /backup, /restore, /recover or /defrag
// cannot be carried out without acting, so it is refused with kube-apiserver's 400 for a
// dry run of any connect subresource (pods/exec alike), before anything is read or done: a
// client that asked for a dry run never gets a snapshot, a restore, a recovery or a
// defragmentation. The instance is running, so each request would act without dryRun (the
// defrag request shows it).
func TestActionSubresourcesRefuseDryRun(t *testing.T) {
	t.Parallel()
	e := ctlStart(t, local.Options{})
	ns, name := "dryrun", "db"
	e.create(ns, &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](1)}})
	e.running(ns, name, 2*time.Minute)

	for _, r := range []struct{ method, sub, query string }{
		{http.MethodGet, "backup", "?dryRun=All"},
		{http.MethodPost, "restore", "?dryRun=All"},
		{http.MethodPost, "recover", "?dryRun=All&member=" + name + "-0"},
		{http.MethodPost, "defrag", "?dryRun=All"},
		{http.MethodPost, "defrag", "?dryRun="},
	} {
		code, status := e.rawAction(r.method, ns, name, r.sub+r.query, []byte("not a snapshot"))
		if code != http.StatusBadRequest || status.Code != http.StatusBadRequest || status.Reason != metav1.StatusReasonBadRequest {
			t.Errorf("%s %s: %d %+v, want a 400 BadRequest Status", r.method, r.sub+r.query, code, status)
		}
	}
	got, err := e.instances(ns).Get(testContext(t), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{etcdaas.DefragRequestedAnnotation, etcdaas.RecoverRequestedAnnotation, etcdaas.RecoverRequestIDAnnotation} {
		if v, ok := got.Annotations[key]; ok {
			t.Errorf("a refused dry run left %s=%q", key, v)
		}
	}
	if got.Status.Phase != v1beta1.PhaseRunning {
		t.Errorf("phase %s after the refused dry runs, want Running", got.Status.Phase)
	}
	if code, body := e.postDefrag(ns, name); code != http.StatusAccepted {
		t.Errorf("POST defrag without dryRun: %d %s, want 202: the dry runs were refused for another reason", code, body)
	}
}

// rawAction sends method to the subresource path (with its query) of the instance as the
// admin and returns the status code and the Status the body holds (empty when it holds none).
func (e *ctlEnv) rawAction(method, ns, name, subAndQuery string, body []byte) (int, metav1.Status) {
	e.t.Helper()
	cfg := e.srv.Config()
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	url := fmt.Sprintf("%s/apis/etcdaas.dev/v1beta1/namespaces/%s/etcdinstances/%s/%s", cfg.Host, ns, name, subAndQuery)
	req, err := http.NewRequestWithContext(testContext(e.t), method, url, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := hc.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var status metav1.Status
	_ = json.Unmarshal(data, &status)
	return resp.StatusCode, status
}
