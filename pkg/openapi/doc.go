// Package openapi holds the OpenAPI definitions generated from the etcdaas.dev types (and the
// Kubernetes types they refer to), served by the API server as OpenAPI v2 and v3, and those
// of core/v1 Event, written by hand, for the standalone server's Events.
package openapi
