# kubelogd — the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
export KUBELOGD_BIN_DIR := $(BIN)
# The control plane is built once from pinned tools modules; the Go build cache makes
# rebuilds after a tools bump incremental.
KUBE_TOOLS := hack/tools/kube/go.mod hack/tools/kube/go.sum
ETCD_TOOLS := hack/tools/etcd/go.mod hack/tools/etcd/go.sum hack/tools/etcd/main.go
GOTEST_FLAGS ?=
FUZZTIME ?= 30s

.PHONY: all build testbin test test-short lint soak demo bench clean kubectl help

all: build

## build: bin/kubelogd and the kubectl plugin bin/kubectl-kubelogd, the release builds.
build: $(BIN)/kubelogd $(BIN)/kubectl-kubelogd

$(BIN)/kubelogd: FORCE
	$(GO) build -o $@ ./cmd/kubelogd

# On the PATH, it is `kubectl kubelogd` (a kubectl plugin; krew manifest: deploy/krew/).
$(BIN)/kubectl-kubelogd: FORCE
	$(GO) build -o $@ ./cmd/kubectl-kubelogd

$(BIN)/kube-apiserver: $(KUBE_TOOLS)
	cd hack/tools/kube && $(GO) build -ldflags='-s -w' -o $@ k8s.io/kubernetes/cmd/kube-apiserver

$(BIN)/etcd: $(ETCD_TOOLS)
	cd hack/tools/etcd && $(GO) build -ldflags='-s -w' -o $@ .

# promtool checks and unit-tests deploy/monitoring (test/monitoring). remove_all_sd leaves
# out the service discoveries, which rule checks never use: half the build.
$(BIN)/promtool: hack/tools/prometheus/go.mod hack/tools/prometheus/go.sum
	cd hack/tools/prometheus && $(GO) build -tags remove_all_sd -ldflags='-s -w' -o $@ github.com/prometheus/prometheus/cmd/promtool

# helm lints charts/kubelogd and renders it for the chart tests (test/e2e/chart_test.go).
# The -X sets what `helm version` prints, the module's version as Helm's own Makefile does.
$(BIN)/helm: hack/tools/helm/go.mod hack/tools/helm/go.sum
	cd hack/tools/helm && $(GO) build -ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$$($(GO) list -m -f '{{.Version}}' helm.sh/helm/v4)" -o $@ helm.sh/helm/v4/cmd/helm

$(BIN)/staticcheck: hack/tools/lint/go.mod hack/tools/lint/go.sum
	cd hack/tools/lint && $(GO) build -o $@ honnef.co/go/tools/cmd/staticcheck

# kubectl is optional (make demo prints how to use it; make bench compares with it).
## kubectl: bin/kubectl (optional: make bench compares with it).
kubectl: $(BIN)/kubectl
$(BIN)/kubectl: $(KUBE_TOOLS)
	cd hack/tools/kube && $(GO) build -ldflags='-s -w' -o $@ k8s.io/kubernetes/cmd/kubectl

## testbin: build etcd, kube-apiserver, kubectl, promtool and helm into bin/ (skipped when bin/ is current).
testbin: $(BIN)/kube-apiserver $(BIN)/etcd $(BIN)/kubectl $(BIN)/promtool $(BIN)/helm

## test: every test, against the real control plane (make lint included).
test: testbin lint
	@# The fake kubelet serves every follow stream of the simulated node from this one machine,
	@# with one inotify instance each (as a real kubelet does): 128, a common default, is too
	@# few for the parallel e2e tests. Raised when permitted (root, as in CI); see README.
	-@[ "$$(cat /proc/sys/fs/inotify/max_user_instances 2>/dev/null || echo 0)" -ge 8192 ] || sysctl -qw fs.inotify.max_user_instances=8192 2>/dev/null || echo "note: cannot raise fs.inotify.max_user_instances; e2e tests may fail with 'too many open files'"
	@# -tags failpoint: the tests' build, with internal/failpoint's crash points (the e2e and
	@# soak harnesses build their kubelogd binary with it too). The release build, without the
	@# tag, is linted as well (make lint), and internal/failpoint's test of its stubs runs in it.
	$(GO) test -race -count=1 -parallel 4 -timeout 25m -tags failpoint $(GOTEST_FLAGS) ./...
	$(GO) test -race -count=1 $(GOTEST_FLAGS) ./internal/failpoint/
	$(GO) test -run '^$$' -fuzz '^FuzzJSONRoundTrip$$' -fuzztime $(FUZZTIME) ./sink/

## lint: go vet and staticcheck (pinned in hack/tools/lint), in both builds.
lint: $(BIN)/staticcheck
	$(GO) vet ./...
	$(GO) vet -tags failpoint ./...
	$(BIN)/staticcheck -tags failpoint ./...
	$(BIN)/staticcheck ./internal/failpoint/ ./cmd/...

## test-short: unit tests only (no control plane).
test-short:
	$(GO) test -short -count=1 -tags failpoint ./...
	$(GO) test -short -count=1 ./internal/failpoint/

## soak: the randomized fault soak alone, one seed for DURATION (default: a random seed, 30m).
soak: $(BIN)/kube-apiserver $(BIN)/etcd
	SOAK_SEED=$(or $(SEED),random) SOAK_DURATION=$(or $(DURATION),30m) $(GO) test -race -count=1 -timeout 24h -v -run '^TestSoak$$' ./test/soak

## demo: a local control plane, pods that log, kubelogd writing ./demo-logs. It builds
## only what it runs (etcd, kube-apiserver, kubelogd): a first run is the shortest there is.
demo: $(BIN)/kube-apiserver $(BIN)/etcd $(BIN)/kubelogd
	$(GO) build -o $(BIN)/kubelogd-demo ./hack/demo
	$(BIN)/kubelogd-demo --kubelogd $(BIN)/kubelogd --output-dir $(CURDIR)/demo-logs

# stern is the peer of make bench (issue #17), pinned in hack/tools/stern at v1.34.0, the
# first release with --qps. Its module requires go 1.26.2: the Go 1.26 that builds
# everything else builds it too, with no other toolchain.
$(BIN)/stern: hack/tools/stern/go.mod hack/tools/stern/go.sum
	cd hack/tools/stern && $(GO) build -ldflags='-s -w' -o $@ github.com/stern/stern

## bench: speed, memory and latency on the local control plane, as ratios to the peers.
## Beside the transport limit, stern and kubectl logs (once `make kubectl` has built it):
## one table, and bin/bench.json. It builds only etcd and kube-apiserver of testbin, and
## stern, so a fresh clone needs nothing else.
bench: $(BIN)/kube-apiserver $(BIN)/etcd $(BIN)/kubelogd $(BIN)/stern
	$(GO) build -o $(BIN)/kubelogd-bench ./hack/bench
	$(BIN)/kubelogd-bench --kubelogd $(BIN)/kubelogd --stern $(BIN)/stern --kubectl $(BIN)/kubectl --repo $(CURDIR) --json $(BIN)/bench.json

## bench-go: the in-process line-path benchmarks of collector and sink alone.
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./collector ./sink

## clean: remove bin/ and demo-logs/.
clean:
	rm -rf $(BIN) demo-logs

## help: list the targets.
help:
	@sed -n 's/^## \([a-z-]*\): /\1\t/p' $(MAKEFILE_LIST) | expand -t 14

FORCE:
