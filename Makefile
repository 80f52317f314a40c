# etcdaas — see README.md. Every target works from a fresh clone with Go installed; generate, verify,
# test and tools-node also fetch Debian packages (protoc; runc, CNI plugins, nftables) from apt sources.

SHELL := /usr/bin/env bash -o pipefail
GO ?= go
OUTPUT := $(CURDIR)/_output
BIN := $(OUTPUT)/bin
DATA_DIR ?= $(OUTPUT)/standalone
# Binaries the tests use, built from the versions pinned in hack/tools/go.mod.
export KUBECTL ?= $(BIN)/kubectl
export ETCDAAS_TOOLS_BIN ?= $(BIN)

GO_TEST_FLAGS ?= -count=1
# Every build and test make runs uses the settings the images need (static, -trimpath): the
# tests, the e2e tier's and the integration tests' own builds of the commands, and the images
# the tests build (hack/images, the cluster tier) then share one compile of each package,
# where a cgo build of the tests and a static one of the images compiled everything twice.
export CGO_ENABLED := 0
export GOFLAGS := -trimpath $(shell $(GO) env GOFLAGS)
# FUZZTIME is how long `make fuzz` runs each fuzz target; FUZZMINIMIZETIME bounds minimizing each
# new input (go test's default, 60s, can take a whole run of a target whose executions are slow).
FUZZTIME ?= 10s
FUZZMINIMIZETIME ?= 1s
COMMANDS := etcdaas-apiserver etcdaas-controller kubectl-etcdaas

.PHONY: all build run prefetch tools tools-control-plane tools-node images generate verify verify-codegen verify-gofmt vet \
	test test-unit test-integration test-e2e test-cluster test-monitoring bench fuzz clean

all: build

## build: the three binaries into _output/bin
build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ $(addprefix ./cmd/,$(COMMANDS))

## run: the standalone server (embedded etcd, in-process controller) on 127.0.0.1:6443
run: build
	@echo "Then, in another terminal:"
	@echo "  kubectl --kubeconfig $(DATA_DIR)/kubeconfig get etcdinstances"
	$(BIN)/etcdaas-apiserver --standalone --data-dir $(DATA_DIR)

# prefetch: the pinned tools' modules, downloaded in the background (one after the other,
# logged to _output/prefetch.log) while make test's first steps compile: on a cold machine,
# minutes of downloads then overlap minutes of compiling instead of following them.
prefetch:
	@mkdir -p $(OUTPUT)
	@hack/tools/prefetch.sh > $(OUTPUT)/prefetch.log 2>&1 &

## tools: kube-apiserver, kube-controller-manager, kubectl, etcd, etcdutl, versitygw, promtool, gotestsum (pinned; built once)
tools:
	hack/tools/build.sh

# tools-control-plane: what the tests before the last step need: `make tools` but promtool and gotestsum.
tools-control-plane:
	hack/tools/build.sh --control-plane

## tools-node: the cluster tier's node: kubelet, kube-proxy, kube-scheduler, etcdctl, containerd,
## CoreDNS (pinned; built once), runc, CNI plugins and nft (Debian packages unpacked into _output/root)
TOOLS_NODE = hack/tools/build.sh --node && hack/tools/debs.sh
tools-node:
	$(TOOLS_NODE)

## images: OCI images without Docker (etcdaas and etcd, linux/amd64 + linux/arm64) into
## _output/images; prints the digests. IMAGE_PLATFORMS and IMAGE_TAG override the defaults.
IMAGE_PLATFORMS ?= linux/amd64,linux/arm64
images:
	$(GO) run ./hack/images project --platform $(IMAGE_PLATFORMS) $(if $(IMAGE_TAG),--tag $(IMAGE_TAG))

## generate: regenerate every generated file
generate:
	hack/update-codegen.sh

## verify: generated files current, gofmt clean, go vet clean
verify: verify-codegen verify-gofmt vet

verify-codegen:
	hack/verify-codegen.sh

verify-gofmt:
	@files=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './_output/*')); \
	if [ -n "$$files" ]; then echo "gofmt needed on:"; echo "$$files"; exit 1; fi

vet:
	$(GO) vet ./...

# The last step: the cluster tier, alone since on 2 cores a kubelet and its pods next to the
# e2e tier's control planes would starve both, and the alerting rules' check, whose promtool
# is built while the tests before run. Every other package runs first.
LAST_PACKAGES = ./test/cluster/... ./test/monitoring/...
# The slowest packages come first, since go test builds and starts packages in the order
# given, and three at a time: these mostly wait for servers, members and grace periods, so the
# slots, not the cores, bounded the step (test/integration, started last, ran minutes alone).
SLOW_PACKAGES = ./test/integration ./pkg/controller/backend/local ./test/e2e ./hack/images
FIRST_PACKAGES = $$({ $(GO) list $(SLOW_PACKAGES); $(GO) list ./...; } | grep -v -e '/test/cluster' -e '/test/monitoring' | awk '!seen[$$0]++')
FIRST_PARALLEL = 3
# What only the last step needs: promtool, gotestsum, the node's binaries and Debian packages.
LATER_TOOLS = hack/tools/build.sh promtool gotestsum && hack/tools/build.sh --node && hack/tools/debs.sh
# The last step's runner: `go test -v` as it prints, then every failed test's output again at
# the end, where a log read from its end shows what failed.
LAST_STEP_RUN = $(BIN)/gotestsum --format standard-verbose --raw-command -- $(GO) test -json

## test: everything — verify, unit, integration and e2e, then the cluster tier and the alerting rules
# The later tools are built from the start at the lowest CPU priority, next to verify, the
# control plane's build and the tests: those keep the CPU whenever they need it, and the build
# takes the time they leave idle (module downloads, one-core steps such as code generation and
# linking, tests waiting for servers) instead of minutes of its own. Its log follows theirs.
# It runs in a process group of its own (set -m), stopped when a step before the last fails
# or make is interrupted.
test: prefetch
	@mkdir -p $(OUTPUT); set -m; \
	nice -n 19 bash -c '$(LATER_TOOLS)' > $(OUTPUT)/tools-later.log 2>&1 & later=$$!; set +m; \
	trap 'kill -- -$$later 2>/dev/null' INT TERM; \
	$(MAKE) --no-print-directory verify tools-control-plane && \
	$(GO) test $(GO_TEST_FLAGS) -p $(FIRST_PARALLEL) -timeout 60m $(FIRST_PACKAGES); first=$$?; \
	[ $$first -eq 0 ] || kill -- -$$later 2>/dev/null; \
	wait $$later; built=$$?; cat $(OUTPUT)/tools-later.log; \
	[ $$first -eq 0 ] && [ $$built -eq 0 ]
	$(LAST_STEP_RUN) $(GO_TEST_FLAGS) -timeout 30m $(LAST_PACKAGES)

## test-unit: the packages under pkg/ and cmd/
test-unit:
	$(GO) test $(GO_TEST_FLAGS) ./pkg/... ./cmd/...

## test-integration: the server in-process on embedded etcd, real clients and kubectl
test-integration: tools
	$(GO) test $(GO_TEST_FLAGS) -timeout 30m ./test/integration/...

## test-e2e: real kube-apiserver and etcd, the aggregator, real kubectl
test-e2e: tools build
	$(GO) test $(GO_TEST_FLAGS) -timeout 30m ./test/e2e/...

## test-cluster: deploy/aggregated on a real node (kubelet, containerd, kube-proxy, CoreDNS); as root
test-cluster: tools tools-node
	$(LAST_STEP_RUN) $(GO_TEST_FLAGS) -timeout 30m ./test/cluster/...

## test-monitoring: the monitoring component's alerting rules, checked and unit-tested by promtool
test-monitoring:
	hack/tools/build.sh promtool
	$(GO) test $(GO_TEST_FLAGS) ./test/monitoring/...

## bench: benchmarks; each prints its figures next to a peer measured in the same run
## (test/bench also writes them under _output/bench/; ETCDAAS_BENCH_OBJECTS sizes the create/GET/LIST
## scenarios, ETCDAAS_BENCH_REPETITIONS repeats them, ETCDAAS_BENCH_WATCHERS sizes the watch fan-out,
## ETCDAAS_BENCH_BACKUP_MIB the backup stream, ETCDAAS_BENCH_APISERVER_GOGC and ETCDAAS_BENCH_APISERVER_GOMEMLIMIT
## etcdaas-apiserver's GOGC and GOMEMLIMIT, given to it alone)
bench: tools
	$(GO) test -run '^$$' -bench . -benchmem -timeout 60m ./...

## fuzz: every Fuzz target under pkg/, one after another, each for FUZZTIME (seeds also run in test)
fuzz:
	@set -e; for pkg in $$(grep -rl --include='*_test.go' '^func Fuzz' pkg | xargs -n1 dirname | sort -u); do \
		for target in $$($(GO) test -list '^Fuzz' ./$$pkg | grep '^Fuzz'); do \
			echo "== $$pkg $$target ($(FUZZTIME))"; \
			$(GO) test ./$$pkg -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) -parallel 2; \
		done; \
	done

clean:
	rm -rf $(OUTPUT)
