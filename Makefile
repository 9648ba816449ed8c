# The one place the project's commands live: the README, CI and the Dockerfile call these targets.
GO ?= go
PKG := ./...
BIN := bin/cobrowse-connector

.PHONY: test lint unit bench build static demo tools

# golangci-lint: this line is the one place its version is set. It is built from source (the Go
# module proxy serves it) into a folder of its version: slow once, then reused until the version
# changes here.
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT := bin/tools/golangci-lint-$(GOLANGCI_LINT_VERSION)/golangci-lint

# The whole test suite: static checks, every test tier under the race detector (interop peers are
# installed by the tests from test/interop/package-lock.json), one pass of every benchmark so that
# the measuring harnesses keep working, and the release build checked to be static.
test: lint unit bench static

# go vet, gofmt, then golangci-lint (.golangci.yml; the log vocabulary: docs/logging.md).
lint: $(GOLANGCI_LINT)
	$(GO) vet $(PKG)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './test/interop/node_modules/*')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GOLANGCI_LINT) run $(PKG)

tools: $(GOLANGCI_LINT)

$(GOLANGCI_LINT):
	GOBIN=$(abspath $(dir $@)) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

unit:
	$(GO) test -race -count=1 -timeout 30m $(PKG)

bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 15m $(PKG)

# The release build, shared with the Dockerfile: a static binary, no cgo, reproducible paths.
# VERSION: the tag (or commit) the tree is at; a build outside a git checkout reads the build info.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w -X github.com/cobrowse-connector/cobrowse-connector/cmd/cobrowse-connector/daemon.Version=$(VERSION)' -o $(BIN) ./cmd/cobrowse-connector

static: build
	$(GO) run ./test/staticcheck $(BIN)

demo:
	$(GO) run ./cmd/cobrowse-connector demo

# The chaos harness (test/chaos/README.md): the built daemon, NATS and a Co-browse cluster in their
# own processes, 200 interactions under daemon SIGKILLs, a node kill and a NATS restart; one line of
# counters, non-zero exit if anything was lost, doubled, left live or ended by a restart.
# CHAOS_MODE=replicas: three daemons (members r1, r2, r3 of the consumer group) on a 3-node NATS
# cluster, under replica SIGKILLs (restarted at once, or removed from the group and added back), a
# NATS node kill and a node kill; the line ends with moved= (interactions that changed owner).
# Extra flags: make chaos CHAOS_FLAGS='-n 1000'.
CHAOS_MODE ?= single
.PHONY: chaos
chaos:
	$(GO) run ./test/chaos -mode $(CHAOS_MODE) $(CHAOS_FLAGS)

# The load harness (test/load/README.md): the built daemon, NATS and a gcbtest Co-browse Server in
# processes of their own; ingestion rate, join and close latency (one at a time and 64 in flight),
# memory and CPU per live session on websocket and long-polling, each printed beside an anchor
# measured in the same run (a bare consumer on the same work queue, the protocol floor of a bare Go
# client, the official CometD JavaScript client), then a goals block and one JSON line. Medians and
# ratios, no timing asserted; exit 1 only if something was not drained, attached or ended.
# Extra flags: make load LOAD_FLAGS='-live 10000'.
.PHONY: load
load: build
	$(GO) run ./test/load -daemon $(BIN) $(LOAD_FLAGS)
