package conversion

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

const peerGroup = "peer.example.com"

// asPeer encodes obj as an object of the peer CRD's group.
func asPeer(t *testing.T, obj runtime.Object, version string) []byte {
	t.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	m["apiVersion"], m["kind"] = peerGroup+"/"+version, "ETCDInstance"
	if raw, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	return raw
}

// review POSTs a ConversionReview to the webhook and returns the decoded answer.
func review(t *testing.T, srv *httptest.Server, desired string, objects ...[]byte) *apiextensionsv1.ConversionResponse {
	t.Helper()
	req := apiextensionsv1.ConversionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "apiextensions.k8s.io/v1", Kind: "ConversionReview"},
		Request:  &apiextensionsv1.ConversionRequest{UID: "u1", DesiredAPIVersion: desired},
	}
	for _, o := range objects {
		req.Request.Objects = append(req.Request.Objects, runtime.RawExtension{Raw: o})
	}
	body, _ := json.Marshal(req)
	resp, err := http.Post(srv.URL, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var out apiextensionsv1.ConversionReview
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	if out.Kind != "ConversionReview" || out.Response == nil || out.Response.UID != "u1" {
		t.Fatalf("answer %+v does not match the request", out)
	}
	return out.Response
}

func TestWebhookConvertsBothWaysThroughTheHub(t *testing.T) {
	srv := httptest.NewServer(NewWebhook(peerGroup))
	defer srv.Close()
	beta := benchObject()
	resp := review(t, srv, peerGroup+"/v1alpha1", asPeer(t, beta, "v1beta1"))
	if resp.Result.Status != metav1.StatusSuccess || len(resp.ConvertedObjects) != 1 {
		t.Fatalf("conversion to v1alpha1 failed: %+v", resp.Result)
	}
	alpha := resp.ConvertedObjects[0].Raw
	var got map[string]any
	if err := json.Unmarshal(alpha, &got); err != nil {
		t.Fatal(err)
	}
	if got["apiVersion"] != peerGroup+"/v1alpha1" || got["kind"] != "ETCDInstance" {
		t.Fatalf("converted object is %v %v", got["apiVersion"], got["kind"])
	}
	if _, ok := got["spec"].(map[string]any)["with_tls_bundle"]; !ok {
		t.Fatalf("v1alpha1 spec lacks with_tls_bundle: %s", alpha)
	}
	back := review(t, srv, peerGroup+"/v1beta1", alpha)
	if back.Result.Status != metav1.StatusSuccess {
		t.Fatalf("conversion back failed: %+v", back.Result)
	}
	want := asPeer(t, beta, "v1beta1")
	var w, g map[string]any
	_ = json.Unmarshal(want, &w)
	_ = json.Unmarshal(back.ConvertedObjects[0].Raw, &g)
	wj, _ := json.Marshal(w["spec"])
	gj, _ := json.Marshal(g["spec"])
	if !bytes.Equal(wj, gj) || g["metadata"].(map[string]any)["name"] != "orders" {
		t.Fatalf("round trip changed the object:\nwant spec %s\ngot  spec %s", wj, gj)
	}
}

func TestWebhookRefusesWhatItCannotConvertFaithfully(t *testing.T) {
	srv := httptest.NewServer(NewWebhook(peerGroup))
	defer srv.Close()
	good := asPeer(t, benchObject(), "v1beta1")
	unknown := bytes.Replace(good, []byte(`"spec":{`), []byte(`"spec":{"surprise":1,`), 1)
	for name, tc := range map[string]struct {
		desired string
		objects [][]byte
		message string
	}{
		"unknown field":          {peerGroup + "/v1alpha1", [][]byte{good, unknown}, `object 1`},
		"another group":          {"etcdaas.dev/v1alpha1", [][]byte{good}, "is not of group"},
		"unserved version":       {peerGroup + "/v2", [][]byte{good}, "unknown version"},
		"object of another kind": {peerGroup + "/v1alpha1", [][]byte{bytes.Replace(good, []byte(`"kind":"ETCDInstance"`), []byte(`"kind":"Pod"`), 1)}, "Pod"},
	} {
		t.Run(name, func(t *testing.T) {
			resp := review(t, srv, tc.desired, tc.objects...)
			if resp.Result.Status != metav1.StatusFailure || resp.ConvertedObjects != nil || !strings.Contains(resp.Result.Message, tc.message) {
				t.Fatalf("want a failure mentioning %q, got %+v with %d objects", tc.message, resp.Result, len(resp.ConvertedObjects))
			}
		})
	}
}

func TestWebhookRejectsMalformedRequests(t *testing.T) {
	srv := httptest.NewServer(NewWebhook(peerGroup))
	defer srv.Close()
	for name, tc := range map[string]struct {
		method, body string
		status       int
	}{
		"GET":        {http.MethodGet, "", http.StatusMethodNotAllowed},
		"not JSON":   {http.MethodPost, "{", http.StatusBadRequest},
		"no request": {http.MethodPost, `{"apiVersion":"apiextensions.k8s.io/v1","kind":"ConversionReview"}`, http.StatusBadRequest},
	} {
		t.Run(name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL, strings.NewReader(tc.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
		})
	}
}
