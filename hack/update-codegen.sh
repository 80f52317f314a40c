#!/usr/bin/env bash
# Regenerates every generated file of the project: deepcopy, conversion and defaulting
# (pkg/apis/...), OpenAPI definitions and model names (pkg/openapi, pkg/apis/...), and the
# clientset, listers, informers and apply configurations (pkg/generated). Generators come from
# the k8s.io/code-generator version pinned in go.mod.
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

kube::codegen::gen_helpers \
    --boilerplate "${BOILERPLATE}" \
    "${ROOT}/pkg/apis"

kube::codegen::gen_openapi \
    --output-dir "${ROOT}/pkg/openapi" \
    --output-pkg "${THIS_PKG}/pkg/openapi" \
    --output-model-name-file "zz_generated.model_name.go" \
    --extra-pkgs "k8s.io/api/autoscaling/v1" \
    --report-filename "${ROOT}/hack/api-rules-violations.list" \
    --update-report \
    --boilerplate "${BOILERPLATE}" \
    "${ROOT}/pkg/apis"

kube::codegen::gen_client \
    --with-watch \
    --with-applyconfig \
    --applyconfig-openapi-schema <(go run "${THIS_PKG}/pkg/openapi/cmd/models-schema") \
    --output-dir "${ROOT}/pkg/generated" \
    --output-pkg "${THIS_PKG}/pkg/generated" \
    --boilerplate "${BOILERPLATE}" \
    "${ROOT}/pkg/apis"
