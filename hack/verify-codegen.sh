#!/usr/bin/env bash
# Fails when any generated file differs from what hack/update-codegen.sh would write now.
# It regenerates into a scratch copy of the tree, so the working tree is never touched.
set -o errexit
set -o nounset
set -o pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
SCRATCH="$(mktemp -d)"
trap 'rm -rf "${SCRATCH}"' EXIT

# Copy the sources (not _output or .git) so the generators see exactly this tree.
tar -C "${REPO_ROOT}" --exclude=./_output --exclude=./.git -cf - . | tar -C "${SCRATCH}" -xf -

(cd "${SCRATCH}" && OUTPUT_ROOT="${SCRATCH}" "${REPO_ROOT}/hack/update-codegen.sh" >/dev/null)

status=0
for dir in pkg/apis pkg/openapi pkg/generated hack/api-rules-violations.list; do
    if ! diff -Nru "${REPO_ROOT}/${dir}" "${SCRATCH}/${dir}"; then
        status=1
    fi
done
if [[ ${status} -ne 0 ]]; then
    echo "Generated files are out of date: run hack/update-codegen.sh and commit the result." >&2
    exit 1
fi
echo "Generated files are up to date."
