#!/usr/bin/env bash
# Fetches protoc, the protobuf compiler go-to-protobuf runs (hack/update-codegen.sh), from the
# machine's apt sources and unpacks it into _output/protoc (relative to the repo root) with
# hack/tools/debs.sh, without installing anything system-wide:
#
#   protobuf-compiler, libprotoc32,  -> _output/protoc/usr/bin/protoc (run it with
#   libprotobuf32                       LD_LIBRARY_PATH=_output/protoc/usr/lib/x86_64-linux-gnu)
#
# Usage: hack/tools/protoc.sh   (prints the directory holding protoc; its log goes to stderr)
set -euo pipefail

TOOLS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"${TOOLS_DIR}/debs.sh" protoc usr/bin/protoc protobuf-compiler libprotoc32 libprotobuf32 >&2
echo "$(cd "${TOOLS_DIR}/../.." && pwd)/_output/protoc/usr/bin"
