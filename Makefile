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
# FUZZTIME is how long `make fuzz` runs each fuzz target; FUZZMINIMIZETIME bounds minimizing each
# new input (go test's default, 60s, can take a whole run of a target whose executions are slow).
FUZZTIME ?= 10s
FUZZMINIMIZETIME ?= 1s
COMMANDS := etcdaas-apiserver etcdaas-controller kubectl-etcdaas

.PHONY: all build run prefetch tools tools-node images generate verify verify-codegen verify-gofmt vet \
	test test-unit test-integration test-e2e test-cluster bench fuzz clean

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

## tools: kube-apiserver, kube-controller-manager, kubectl, etcd, etcdutl, versitygw, promtool (pinned; built once)
tools:
	hack/tools/build.sh

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

# Every package but the cluster tier, which runs alone afterwards: on 2 cores, a kubelet
# and its pods next to the e2e tier's control planes would starve both.
NON_CLUSTER_PACKAGES = $$($(GO) list ./... | grep -v '/test/cluster')

## test: everything — verify, unit, integration and e2e, then the cluster tier
# tools-node is built at the lowest CPU priority while the other packages' tests run:
# they mostly wait, so on a cold machine the build takes their idle time instead of minutes of
# its own, and a test that needs the CPU always gets it first. Its log follows theirs. It runs
# in a process group of its own (set -m), stopped with the tests when make is interrupted.
test: prefetch verify tools
	@mkdir -p $(OUTPUT); set -m; \
	nice -n 19 bash -c '$(TOOLS_NODE)' > $(OUTPUT)/tools-node.log 2>&1 & node=$$!; set +m; \
	trap 'kill -- -$$node 2>/dev/null' INT TERM; \
	$(GO) test $(GO_TEST_FLAGS) -timeout 60m $(NON_CLUSTER_PACKAGES); tests=$$?; \
	wait $$node; built=$$?; cat $(OUTPUT)/tools-node.log; \
	[ $$tests -eq 0 ] && [ $$built -eq 0 ]
	$(GO) test $(GO_TEST_FLAGS) -v -timeout 30m ./test/cluster/...

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
	$(GO) test $(GO_TEST_FLAGS) -v -timeout 30m ./test/cluster/...

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
