package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// This file declares the authorization matrix: every request on etcdinstances and its
// subresources, every kind of caller, and what each caller's role grants. The expected status
// of every cell is derived from this one declaration; testAuthorizationMatrix checks every
// cell through kube-apiserver and directly against etcdaas-apiserver, and
// TestAuthorizationMatrixDocumented keeps the table in docs/reliability.md equal to it.

// matrixRequest is one row: an RBAC verb on etcdinstances or one of its subresources, sent as
// a real request, and the status it gets once authorized. Writes are dry runs, and the
// restore and recover requests are ones the server refuses after authorization (a body that
// is not a snapshot, an instance whose quorum holds), so the matrix changes no data: an
// accepted defrag request only defragments the members, which keeps every key.
type matrixRequest struct {
	// Name labels the row.
	Name string
	// Verb and Subresource are what RBAC authorizes.
	Verb, Subresource string
	// Method, Object (false: the namespace's collection), Suffix and Query build the request.
	Method string
	Object bool
	Suffix string
	Query  string
	// Body names the request body the fixture provides ("" for none) and ContentType its type.
	Body        string
	ContentType string
	// Authorized is the status once the caller is authorized: a success, or the refusal the
	// state of the instance gives (409 recover while quorum holds, 422 restore of a body
	// that is not a snapshot). Either way never 401 or 403.
	Authorized int
}

// Request bodies the fixture provides.
const (
	bodyNewObject = "new-object"
	bodyObject    = "object"
	bodyScale     = "scale"
	bodyLabels    = "labels-patch"
	bodyReplicas  = "replicas-patch"
	bodyNotASnap  = "not-a-snapshot"
)

const (
	jsonType  = "application/json"
	mergeType = "application/merge-patch+json"
	octetType = "application/octet-stream"
)

// matrixRequests are the rows, in the table's order.
var matrixRequests = []matrixRequest{
	{Name: "get", Verb: "get", Method: http.MethodGet, Object: true, Authorized: http.StatusOK},
	{Name: "list", Verb: "list", Method: http.MethodGet, Authorized: http.StatusOK},
	{Name: "watch", Verb: "watch", Method: http.MethodGet, Query: "watch=true&timeoutSeconds=1", Authorized: http.StatusOK},
	{Name: "create", Verb: "create", Method: http.MethodPost, Query: "dryRun=All", Body: bodyNewObject, ContentType: jsonType, Authorized: http.StatusCreated},
	{Name: "update", Verb: "update", Method: http.MethodPut, Object: true, Query: "dryRun=All", Body: bodyObject, ContentType: jsonType, Authorized: http.StatusOK},
	{Name: "patch", Verb: "patch", Method: http.MethodPatch, Object: true, Query: "dryRun=All", Body: bodyLabels, ContentType: mergeType, Authorized: http.StatusOK},
	{Name: "delete", Verb: "delete", Method: http.MethodDelete, Object: true, Query: "dryRun=All", Authorized: http.StatusOK},
	{Name: "deletecollection", Verb: "deletecollection", Method: http.MethodDelete, Query: "dryRun=All", Authorized: http.StatusOK},
	{Name: "status get", Verb: "get", Subresource: "status", Method: http.MethodGet, Object: true, Suffix: "/status", Authorized: http.StatusOK},
	{Name: "status update", Verb: "update", Subresource: "status", Method: http.MethodPut, Object: true, Suffix: "/status", Query: "dryRun=All", Body: bodyObject, ContentType: jsonType, Authorized: http.StatusOK},
	{Name: "status patch", Verb: "patch", Subresource: "status", Method: http.MethodPatch, Object: true, Suffix: "/status", Query: "dryRun=All", Body: bodyLabels, ContentType: mergeType, Authorized: http.StatusOK},
	{Name: "scale get", Verb: "get", Subresource: "scale", Method: http.MethodGet, Object: true, Suffix: "/scale", Authorized: http.StatusOK},
	{Name: "scale update", Verb: "update", Subresource: "scale", Method: http.MethodPut, Object: true, Suffix: "/scale", Query: "dryRun=All", Body: bodyScale, ContentType: jsonType, Authorized: http.StatusOK},
	{Name: "scale patch", Verb: "patch", Subresource: "scale", Method: http.MethodPatch, Object: true, Suffix: "/scale", Query: "dryRun=All", Body: bodyReplicas, ContentType: mergeType, Authorized: http.StatusOK},
	{Name: "backup (GET)", Verb: "get", Subresource: "backup", Method: http.MethodGet, Object: true, Suffix: "/backup", Authorized: http.StatusOK},
	{Name: "backups (GET)", Verb: "get", Subresource: "backups", Method: http.MethodGet, Object: true, Suffix: "/backups", Authorized: http.StatusOK},
	{Name: "restore (POST, not a snapshot)", Verb: "create", Subresource: "restore", Method: http.MethodPost, Object: true, Suffix: "/restore", Body: bodyNotASnap, ContentType: octetType, Authorized: http.StatusUnprocessableEntity},
	{Name: "recover (POST, quorum holds)", Verb: "create", Subresource: "recover", Method: http.MethodPost, Object: true, Suffix: "/recover", Authorized: http.StatusConflict},
	{Name: "defrag (POST)", Verb: "create", Subresource: "defrag", Method: http.MethodPost, Object: true, Suffix: "/defrag", Authorized: http.StatusAccepted},
}

// rbacResource is the RBAC resource the request is authorized as.
func (r matrixRequest) rbacResource() string {
	if r.Subresource == "" {
		return "etcdinstances"
	}
	return "etcdinstances/" + r.Subresource
}

// grant is one verb on one RBAC resource, "verb resource".
func grant(verb, resource string) string { return verb + " " + resource }

// roleGrants is what the built-in view, edit and admin ClusterRoles grant on etcdaas.dev once
// deploy/'s aggregated roles are in them: reading an instance never grants its data, and
// replacing the data is admin only. No user role writes status.
var roleGrants = func() map[string][]string {
	view := []string{
		grant("get", "etcdinstances"), grant("list", "etcdinstances"), grant("watch", "etcdinstances"),
		grant("get", "etcdinstances/status"), grant("get", "etcdinstances/scale"),
	}
	edit := append(slices.Clone(view),
		grant("create", "etcdinstances"), grant("update", "etcdinstances"), grant("patch", "etcdinstances"),
		grant("delete", "etcdinstances"), grant("deletecollection", "etcdinstances"),
		grant("update", "etcdinstances/scale"), grant("patch", "etcdinstances/scale"),
		grant("get", "etcdinstances/backup"), grant("get", "etcdinstances/backups"),
		grant("create", "etcdinstances/defrag"),
	)
	admin := append(slices.Clone(edit), grant("create", "etcdinstances/restore"), grant("create", "etcdinstances/recover"))
	return map[string][]string{"view": view, "edit": edit, "admin": admin}
}()

// Users of the matrix, each bound (or not) as its column says.
const (
	matrixNobody     = "e2e-matrix-nobody"
	matrixViewer     = "e2e-matrix-viewer"
	matrixEditor     = "e2e-matrix-editor"
	matrixAdmin      = "e2e-matrix-admin"
	matrixMaster     = "e2e-matrix-master"
	matrixImpersonat = "e2e-matrix-impersonator"
	matrixImpostor   = "e2e-matrix-impostor"
	matrixSpoofer    = "e2e-matrix-spoofer"
	anonymousUser    = "system:anonymous"
)

// Credentials a caller presents.
const (
	credNone          = "none"
	credBadToken      = "bad-token"
	credClientCert    = "client-cert"
	credUnknownCACert = "unknown-ca-cert"
	// credFrontProxyOtherName is a certificate of the front-proxy CA whose name is not in
	// --requestheader-allowed-names.
	credFrontProxyOtherName = "front-proxy-ca-cert-other-name"
)

// matrixIdentity is one column: how a caller authenticates and what it may do.
type matrixIdentity struct {
	// Name labels the column.
	Name string
	// Credential is one of the cred* constants; ClientCert names the certificate's user.
	Credential string
	ClientCert string
	// Impersonate is the user the caller asks to act as (Impersonate-User), if any, and
	// ImpersonateGroups the groups (Impersonate-Group).
	Impersonate       string
	ImpersonateGroups []string
	// SpoofHeaders sends X-Remote-User: matrixAdmin and X-Remote-Group: system:masters, the
	// front proxy's headers, without being the front proxy.
	SpoofHeaders bool
	// Role is the ClusterRole whose grants the request is finally authorized with: "" none,
	// "view", "edit", "admin", or "*" for system:masters.
	Role string
	// ForbiddenAs is the user a 403 must name: who the server took the caller for.
	ForbiddenAs string
}

// matrixIdentities are the columns, in the table's order.
var matrixIdentities = []matrixIdentity{
	{Name: "anonymous", Credential: credNone, ForbiddenAs: anonymousUser},
	{Name: "invalid token", Credential: credBadToken},
	{Name: "no RBAC", Credential: credClientCert, ClientCert: matrixNobody, ForbiddenAs: matrixNobody},
	{Name: "view", Credential: credClientCert, ClientCert: matrixViewer, Role: "view", ForbiddenAs: matrixViewer},
	{Name: "edit", Credential: credClientCert, ClientCert: matrixEditor, Role: "edit", ForbiddenAs: matrixEditor},
	{Name: "admin", Credential: credClientCert, ClientCert: matrixAdmin, Role: "admin", ForbiddenAs: matrixAdmin},
	{Name: "system:masters", Credential: credClientCert, ClientCert: matrixMaster, Role: "*"},
	{Name: "impersonates admin", Credential: credClientCert, ClientCert: matrixImpersonat, Impersonate: matrixAdmin, Role: "admin", ForbiddenAs: matrixAdmin},
	{Name: "impersonates admin in system:masters", Credential: credClientCert, ClientCert: matrixImpersonat, Impersonate: matrixAdmin, ImpersonateGroups: []string{"system:masters"}, ForbiddenAs: matrixImpersonat},
	{Name: "impersonation not allowed", Credential: credClientCert, ClientCert: matrixImpostor, Impersonate: matrixAdmin, ForbiddenAs: matrixImpostor},
	{Name: "X-Remote-User, no cert", Credential: credNone, SpoofHeaders: true, ForbiddenAs: anonymousUser},
	{Name: "X-Remote-User + cluster CA cert", Credential: credClientCert, ClientCert: matrixSpoofer, SpoofHeaders: true, ForbiddenAs: matrixSpoofer},
	{Name: "X-Remote-User + unknown CA cert", Credential: credUnknownCACert, SpoofHeaders: true},
	{Name: "X-Remote-User + front-proxy CA cert, name not allowed", Credential: credFrontProxyOtherName, SpoofHeaders: true},
}

// expected is the status the identity gets for the request: 401 when it cannot be
// authenticated, 403 when its role lacks the grant, the request's authorized status otherwise.
func expected(r matrixRequest, id matrixIdentity) int {
	switch {
	case id.Credential == credBadToken || id.Credential == credUnknownCACert || id.Credential == credFrontProxyOtherName:
		return http.StatusUnauthorized
	case id.Role == "*" || slices.Contains(roleGrants[id.Role], grant(r.Verb, r.rbacResource())):
		return r.Authorized
	default:
		return http.StatusForbidden
	}
}

// matrixMarkdown renders the declaration as a markdown table, one row per request and one
// column per identity.
func matrixMarkdown() string {
	var b strings.Builder
	b.WriteString("| Request | RBAC verb and resource |")
	for _, id := range matrixIdentities {
		b.WriteString(" " + id.Name + " |")
	}
	b.WriteString("\n|---|---|" + strings.Repeat("---|", len(matrixIdentities)) + "\n")
	for _, r := range matrixRequests {
		fmt.Fprintf(&b, "| %s | `%s %s` |", r.Name, r.Verb, r.rbacResource())
		for _, id := range matrixIdentities {
			b.WriteString(" " + strconv.Itoa(expected(r, id)) + " |")
		}
		b.WriteString("\n")
	}
	return b.String()
}
