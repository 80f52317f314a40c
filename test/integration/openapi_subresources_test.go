package integration

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// instancePath is the OpenAPI path of an etcdinstances subresource of v1beta1.
func instancePath(sub string) string {
	return "/apis/etcdaas.dev/v1beta1/namespaces/{namespace}/etcdinstances/{name}/" + sub
}

// TestOpenAPIConnectSubresourcesV2 checks that OpenAPI v2 tells a client generated from it what
// the connect subresources take and give: the backup stream's media type, the restore body's,
// and recover's member parameter (the installer documents */* and no parameter).
func TestOpenAPIConnectSubresourcesV2(t *testing.T) {
	res := do(t, http.MethodGet, "/openapi/v2", nil, "Accept", "application/json")
	if res.code != http.StatusOK {
		t.Fatalf("/openapi/v2: %d %s", res.code, res.body)
	}
	type parameter struct {
		Ref                         string `json:"$ref"`
		Name, In, Type, Description string
	}
	type operation struct {
		Produces   []string    `json:"produces"`
		Consumes   []string    `json:"consumes"`
		Parameters []parameter `json:"parameters"`
	}
	var doc struct {
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Parameters map[string]parameter                  `json:"parameters"` // shared, by $ref
	}
	if err := json.Unmarshal(res.body, &doc); err != nil {
		t.Fatal(err)
	}
	op := func(sub, method string) operation {
		return openAPIOperation[operation](t, "/openapi/v2", doc.Paths, sub, method)
	}
	if got := op("backup", "get").Produces; !slices.Equal(got, []string{"application/octet-stream"}) {
		t.Errorf("GET backup produces %v, want [application/octet-stream]", got)
	}
	if got := op("restore", "post").Consumes; !slices.Equal(got, []string{"application/octet-stream"}) {
		t.Errorf("POST restore consumes %v, want [application/octet-stream]", got)
	}
	params := op("recover", "post").Parameters
	if !slices.ContainsFunc(params, func(p parameter) bool {
		if name, shared := strings.CutPrefix(p.Ref, "#/parameters/"); shared {
			p = doc.Parameters[name]
		}
		return p.Name == "member" && p.In == "query" && p.Type == "string" && p.Description != ""
	}) {
		t.Errorf("POST recover documents no query parameter member: %+v", params)
	}
}

// TestOpenAPIConnectSubresourcesV3 is TestOpenAPIConnectSubresourcesV2 for OpenAPI v3, which
// kubectl and the aggregator read.
func TestOpenAPIConnectSubresourcesV3(t *testing.T) {
	res := do(t, http.MethodGet, "/openapi/v3/apis/etcdaas.dev/v1beta1", nil)
	if res.code != http.StatusOK {
		t.Fatalf("/openapi/v3/apis/etcdaas.dev/v1beta1: %d %s", res.code, res.body)
	}
	type content map[string]struct {
		Schema struct{ Type, Format string } `json:"schema"`
	}
	type operation struct {
		Parameters []struct {
			Name, In, Description string
			Schema                struct{ Type string } `json:"schema"`
		} `json:"parameters"`
		RequestBody *struct {
			Required bool    `json:"required"`
			Content  content `json:"content"`
		} `json:"requestBody"`
		Responses map[string]struct {
			Content content `json:"content"`
		} `json:"responses"`
	}
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(res.body, &doc); err != nil {
		t.Fatal(err)
	}
	op := func(sub, method string) operation {
		return openAPIOperation[operation](t, "/openapi/v3", doc.Paths, sub, method)
	}
	ok := op("backup", "get").Responses["200"].Content
	if _, found := ok["application/octet-stream"]; !found || len(ok) != 1 {
		t.Errorf("GET backup answers 200 with %v, want only application/octet-stream", ok)
	}
	body := op("restore", "post").RequestBody
	if body == nil || !body.Required || len(body.Content) != 1 || body.Content["application/octet-stream"].Schema.Format != "binary" {
		t.Errorf("POST restore has request body %+v, want a required application/octet-stream binary string", body)
	}
	params := op("recover", "post").Parameters
	found := false
	for _, p := range params {
		found = found || p.Name == "member" && p.In == "query" && p.Schema.Type == "string" && p.Description != ""
	}
	if !found {
		t.Errorf("POST recover documents no query parameter member: %+v", params)
	}
}

// openAPIOperation decodes the operation method of the v1beta1 etcdinstances subresource sub
// from the paths of the OpenAPI document named doc, failing the test when it is missing.
func openAPIOperation[O any](t *testing.T, doc string, paths map[string]map[string]json.RawMessage, sub, method string) O {
	t.Helper()
	var o O
	raw, ok := paths[instancePath(sub)][method]
	if !ok {
		t.Fatalf("%s has no %s %s", doc, method, instancePath(sub))
	}
	if err := json.Unmarshal(raw, &o); err != nil {
		t.Fatal(err)
	}
	return o
}
