#!/usr/bin/env bash
# Downloads the modules of the pinned tools (hack/tools and each of its submodules) into the
# Go module cache, one module after the other. `make test` starts it in the background before
# its first step: the downloads wait on the network while verify and the first tool builds
# keep the CPU busy, so by the time a build needs a module it is mostly there. It changes
# nothing but the module cache, which the go command locks for concurrent use, and it ends
# by itself once every module is fetched (a failure here only means the build fetches it).
#
# Usage: hack/tools/prefetch.sh
set -uo pipefail

TOOLS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export GOWORK=off

# In the order make test builds from them; any other submodule last.
ORDER=(. versitygw promtool containerd coredns etcd-previous)
for dir in "${TOOLS_DIR}"/*/; do
  name="$(basename "${dir}")"
  [[ " ${ORDER[*]} " == *" ${name} "* ]] || ORDER+=("${name}")
done

status=0
for name in "${ORDER[@]}"; do
  dir="${TOOLS_DIR}/${name}"
  [[ -f "${dir}/go.mod" ]] || continue
  start=$(date +%s)
  if (cd "${dir}" && go mod download); then
    echo "prefetched the modules of hack/tools/${name} in $(( $(date +%s) - start ))s"
  else
    echo "prefetching the modules of hack/tools/${name} failed; its build fetches them" >&2
    status=1
  fi
done
exit "${status}"
