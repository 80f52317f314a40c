#!/usr/bin/env bash
# Regenerates every generated file of the project: deepcopy, conversion and defaulting
# (pkg/apis/...), the protobuf encoding of the served versions (generated.proto, generated.pb.go
# and the protobuf struct tags in types.go, by go-to-protobuf), OpenAPI definitions and model
# names (pkg/openapi, pkg/apis/...), and the clientset, listers, informers and apply
# configurations (pkg/generated). Generators come from the k8s.io/code-generator version pinned
# in go.mod; protoc from the apt sources (hack/tools/protoc.sh).
#
# OUTPUT_ROOT=<dir> writes into a copy of the tree instead (hack/verify-codegen.sh uses it).
set -o errexit
set -o nounset
set -o pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
ROOT="${OUTPUT_ROOT:-${REPO_ROOT}}"
THIS_PKG="github.com/etcdaas/etcdaas"
BOILERPLATE="${REPO_ROOT}/hack/boilerplate.go.txt"

CODEGEN_PKG="$(cd "${REPO_ROOT}" && go list -m -f '{{.Dir}}' k8s.io/code-generator)"
if [[ -z "${CODEGEN_PKG}" || ! -f "${CODEGEN_PKG}/kube_codegen.sh" ]]; then
    (cd "${REPO_ROOT}" && go mod download k8s.io/code-generator)
    CODEGEN_PKG="$(cd "${REPO_ROOT}" && go list -m -f '{{.Dir}}' k8s.io/code-generator)"
fi

# Install the generators into the project's own output folder, not the user's GOBIN.
export GOBIN="${REPO_ROOT}/_output/codegen/bin"
mkdir -p "${GOBIN}"

# shellcheck source=/dev/null
source "${CODEGEN_PKG}/kube_codegen.sh"

cd "${ROOT}"

# gen_protobuf runs go-to-protobuf on both served versions. go-to-protobuf writes the IDL next
# to each package, then runs protoc (hack/tools/protoc.sh fetches it from the apt sources) with
# its gogo plugin on a source tree laid out by import path: a scratch directory of symlinks to
# this tree, k8s.io/apimachinery (whose generated.proto files the IDL imports) and
# github.com/gogo/protobuf (gogo.proto and google/protobuf/descriptor.proto).
gen_protobuf() {
    local protoc_bin
    protoc_bin="$("${REPO_ROOT}/hack/tools/protoc.sh")"
    go install \
        k8s.io/code-generator/cmd/go-to-protobuf \
        k8s.io/code-generator/cmd/go-to-protobuf/protoc-gen-gogo \
        golang.org/x/tools/cmd/goimports

    local src
    src="$(mktemp -d)"
    # shellcheck disable=SC2064 # expand now: src is local
    trap "rm -rf '${src}'" RETURN
    mkdir -p "${src}/github.com/etcdaas" "${src}/k8s.io" "${src}/github.com/gogo"
    ln -s "${ROOT}" "${src}/${THIS_PKG}"
    ln -s "$(go list -m -f '{{.Dir}}' k8s.io/apimachinery)" "${src}/k8s.io/apimachinery"
    ln -s "$(go list -m -f '{{.Dir}}' github.com/gogo/protobuf)" "${src}/github.com/gogo/protobuf"

    local apimachinery=(
        k8s.io/apimachinery/pkg/util/intstr
        k8s.io/apimachinery/pkg/api/resource
        k8s.io/apimachinery/pkg/runtime/schema
        k8s.io/apimachinery/pkg/runtime
        k8s.io/apimachinery/pkg/apis/meta/v1
    )
    PATH="${GOBIN}:${protoc_bin}:${PATH}" \
    LD_LIBRARY_PATH="${protoc_bin}/../lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:${LD_LIBRARY_PATH}}" \
        go-to-protobuf \
            --output-dir "${src}" \
            --proto-import "${src}" \
            --proto-import "${src}/github.com/gogo/protobuf/protobuf" \
            --go-header-file "${BOILERPLATE}" \
            --apimachinery-packages "$(printf -- '-%s,' "${apimachinery[@]}" | sed 's/,$//')" \
            --packages "${THIS_PKG}/pkg/apis/etcdaas/v1beta1,${THIS_PKG}/pkg/apis/etcdaas/v1alpha1"
}

kube::codegen::gen_helpers \
    --boilerplate "${BOILERPLATE}" \
    "${ROOT}/pkg/apis"

gen_protobuf

kube::codegen::gen_openapi \
    --output-dir "${ROOT}/pkg/openapi" \
    --output-pkg "${THIS_PKG}/pkg/openapi" \
    --output-model-name-file "zz_generated.model_name.go" \
    --extra-pkgs "k8s.io/api/autoscaling/v1" \
    --report-filename "${ROOT}/hack/api-rules-violations.list" \
    --update-report \
    --boilerplate "${BOILERPLATE}" \
    "${ROOT}/pkg/apis"

# --prefers-protobuf: like client-go's clients of built-in types, the typed clients send and
# ask for protobuf unless their rest.Config names a content type.
kube::codegen::gen_client \
    --with-watch \
    --prefers-protobuf \
    --with-applyconfig \
    --applyconfig-openapi-schema <(go run "${THIS_PKG}/pkg/openapi/cmd/models-schema") \
    --output-dir "${ROOT}/pkg/generated" \
    --output-pkg "${THIS_PKG}/pkg/generated" \
    --boilerplate "${BOILERPLATE}" \
    "${ROOT}/pkg/apis"
