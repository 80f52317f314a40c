#!/usr/bin/env bash
# Measures a COLD `make test`: a fresh clone of HEAD, an empty Go build cache and an empty
# module cache, nothing built. It runs make test's steps one after another (exactly what
# `make test` runs, in its order) and prints each step's wall time and CPU seconds, the sum,
# and the load average before and after, since on a shared machine wall time depends on it.
#
# Usage: hack/measure-cold.sh [workdir]   (default: a new directory under ${TMPDIR:-/tmp})
# The clone and both caches stay in workdir for inspection; remove it afterwards (the module
# cache is read-only: `chmod -R u+w workdir && rm -rf workdir`). The cluster tier needs root,
# like `make test-cluster`.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${1:-$(mktemp -d "${TMPDIR:-/tmp}/etcdaas-cold.XXXXXX")}"
mkdir -p "${WORK}"
WORK="$(cd "${WORK}" && pwd)"
if [[ -e "${WORK}/src" ]]; then
  echo "${WORK}/src exists: give an empty or new directory" >&2
  exit 2
fi

git clone --quiet --no-local "${REPO_ROOT}" "${WORK}/src"
git -C "${WORK}/src" checkout --quiet "$(git -C "${REPO_ROOT}" rev-parse HEAD)"
mkdir -p "${WORK}/gocache" "${WORK}/gomodcache"
export GOCACHE="${WORK}/gocache" GOMODCACHE="${WORK}/gomodcache"
# Nothing from the caller's tools: the clone builds its own into its _output/bin.
unset KUBECTL ETCDAAS_TOOLS_BIN

cd "${WORK}/src"
echo "cold make test of $(git rev-parse --short HEAD) in ${WORK} ($(nproc) CPUs, $(go version | cut -d' ' -f3))"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

results=()
step() {
  local name="$1" times
  shift
  echo "== ${name}: $*"
  times="${WORK}/${name}.time"
  /usr/bin/time -o "${times}" -f '%e %U %S' "$@" > "${WORK}/${name}.log" 2>&1 || {
    echo "step ${name} failed; its output: ${WORK}/${name}.log" >&2
    tail -n 30 "${WORK}/${name}.log" >&2
    exit 1
  }
  read -r wall user sys < "${times}"
  results+=("${name} ${wall} ${user} ${sys}")
  awk -v w="${wall}" -v u="${user}" -v s="${sys}" -v l="$(cut -d' ' -f1 /proc/loadavg)" \
    'BEGIN { printf "   %8.0f s wall %8.0f s CPU (load now %s)\n", w, u + s, l }'
}

# The prerequisites of `make test` (verify, tools, tools-node) in its order, then its test
# commands (make -o: the prerequisites just made are not made again).
# Module downloads first, alone, so that their time is not hidden in the first build.
step modules bash -c 'go mod download && for m in hack/tools hack/tools/*/; do (cd "$m" && GOWORK=off go mod download); done'
step verify-codegen make verify-codegen
step verify-gofmt make verify-gofmt
step vet make vet
step tools make tools
step tools-node make tools-node
step tests make test -o verify -o tools -o tools-node

echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%s\n' "${results[@]}" | awk '
  BEGIN { printf "%-16s %10s %10s\n", "step", "wall (s)", "CPU (s)" }
  { printf "%-16s %10.0f %10.0f\n", $1, $2, $3 + $4; w += $2; c += $3 + $4 }
  END { printf "%-16s %10.0f %10.0f   (%.1f min wall)\n", "total", w, c, w / 60 }'
echo "slowest test packages (from ${WORK}/tests.log):"
grep -E '^(ok|FAIL|---)' "${WORK}/tests.log" | grep -E '[0-9.]+s$' | sort -t$'\t' -k3 -rn | head -n 8 || true
