package apiserver

import (
	"strings"

	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/kube-openapi/pkg/spec3"
	"k8s.io/kube-openapi/pkg/validation/spec"

	etcdinstancestorage "github.com/etcdaas/etcdaas/pkg/registry/etcdinstance"
)

// The OpenAPI documents of the connect subresources say what the handlers really take and
// give: the installer documents every connect route as consuming and producing */* with only
// the parameters of a connect options object, which these subresources do not have.

// recoverMemberDoc describes the recover subresource's member query parameter.
const recoverMemberDoc = "The surviving voting member to rebuild the cluster from; by default the one with the highest revision."

// subresourcePath reports whether path is the path of the etcdinstances subresource given by
// its storage path (etcdinstances/recover), in any version.
func subresourcePath(path, storagePath string) bool {
	sub := storagePath[strings.Index(storagePath, "/")+1:]
	return strings.HasSuffix(path, "/etcdinstances/{name}/"+sub)
}

// documentSubresourcesV2 corrects the OpenAPI v2 operations of backup, restore and recover.
func documentSubresourcesV2(s *spec.Swagger) (*spec.Swagger, error) {
	if s == nil || s.Paths == nil {
		return s, nil
	}
	for path, item := range s.Paths.Paths {
		switch {
		case subresourcePath(path, etcdinstancestorage.BackupResourcePath) && item.Get != nil:
			item.Get.Produces = []string{etcdinstancestorage.BackupMediaType}
		case subresourcePath(path, etcdinstancestorage.RestoreResourcePath) && item.Post != nil:
			item.Post.Consumes = []string{etcdinstancestorage.RestoreMediaType}
		case subresourcePath(path, etcdinstancestorage.RecoverResourcePath) && item.Post != nil:
			item.Post.Parameters = append(item.Post.Parameters, spec.Parameter{
				SimpleSchema: spec.SimpleSchema{Type: "string"},
				ParamProps: spec.ParamProps{
					Name: etcdinstancestorage.RecoverMemberParameter, In: "query", Description: recoverMemberDoc,
				},
			})
		default:
			continue
		}
		s.Paths.Paths[path] = item
	}
	return s, nil
}

// documentSubresourcesV3 corrects the OpenAPI v3 operations of backup, restore and recover.
func documentSubresourcesV3(s *spec3.OpenAPI) (*spec3.OpenAPI, error) {
	if s == nil || s.Paths == nil {
		return s, nil
	}
	for path, item := range s.Paths.Paths {
		switch {
		case subresourcePath(path, etcdinstancestorage.BackupResourcePath) && item.Get != nil:
			producesOnly(item.Get, etcdinstancestorage.BackupMediaType)
		case subresourcePath(path, etcdinstancestorage.RestoreResourcePath) && item.Post != nil:
			item.Post.RequestBody = &spec3.RequestBody{RequestBodyProps: spec3.RequestBodyProps{
				Required: true,
				Content: map[string]*spec3.MediaType{etcdinstancestorage.RestoreMediaType: {
					MediaTypeProps: spec3.MediaTypeProps{Schema: binaryString()},
				}},
			}}
		case subresourcePath(path, etcdinstancestorage.RecoverResourcePath) && item.Post != nil:
			item.Post.Parameters = append(item.Post.Parameters, &spec3.Parameter{ParameterProps: spec3.ParameterProps{
				Name: etcdinstancestorage.RecoverMemberParameter, In: "query", Description: recoverMemberDoc,
				Schema: spec.StringProperty(),
			}})
		}
	}
	return s, nil
}

// producesOnly documents every response of op as the media type mediaType, with the schema it
// had.
func producesOnly(op *spec3.Operation, mediaType string) {
	if op.Responses == nil {
		return
	}
	for code, resp := range op.Responses.StatusCodeResponses {
		if resp == nil || len(resp.Content) == 0 {
			continue
		}
		var schema *spec.Schema
		for _, m := range resp.Content {
			if m != nil && m.Schema != nil {
				schema = m.Schema
			}
		}
		resp.Content = map[string]*spec3.MediaType{mediaType: {MediaTypeProps: spec3.MediaTypeProps{Schema: schema}}}
		op.Responses.StatusCodeResponses[code] = resp
	}
}

// documentSubresources makes the OpenAPI v2 and v3 documents of c describe the connect
// subresources truthfully, after any post-processing c already does.
func documentSubresources(c *genericapiserver.Config) {
	if v2 := c.OpenAPIConfig; v2 != nil {
		v2.PostProcessSpec = thenDo(v2.PostProcessSpec, documentSubresourcesV2)
	}
	if v3 := c.OpenAPIV3Config; v3 != nil {
		v3.PostProcessSpec = thenDo(v3.PostProcessSpec, documentSubresourcesV3)
	}
}

// thenDo returns the post-processing step that runs previous (when there is one), then next.
func thenDo[T any](previous, next func(T) (T, error)) func(T) (T, error) {
	if previous == nil {
		return next
	}
	return func(s T) (T, error) {
		s, err := previous(s)
		if err != nil {
			return s, err
		}
		return next(s)
	}
}

// binaryString is the schema of a body of raw bytes.
func binaryString() *spec.Schema {
	s := spec.StringProperty()
	s.Format = "binary"
	return s
}
