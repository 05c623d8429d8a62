# llmtap: a Traefik plugin that observes LLM traffic, and its collector.
# `make demo` and `make test` work on a fresh Debian machine: the scripts
# install what they need (see scripts/).

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
GO ?= go
# go test -count for the unit tests, and flags for every go test and yaegi
# test run (make test-repeat passes -json and -v to tally the results).
COUNT ?= 1
GOTESTFLAGS ?=
YAEGIFLAGS ?=
# The parts of make test, in the order they run.
TEST_PARTS := test-unit test-yaegi test-infra test-alerts test-integration test-chdb test-e2e test-stack test-soak test-gray

.PHONY: frames bench-storage all build test test-repeat test-parts test-unit test-yaegi test-infra test-alerts test-integration test-chdb test-e2e test-stack test-soak test-gray test-fault soak lint bench demo up down prices-missing clean

all: build

## build: compile and vet the plugin's module and the collector
build:
	$(GO) build ./...
	$(GO) vet ./...
	cd collector && $(GO) build -o ../bin/llmtap-collector ./cmd/llmtap-collector && $(GO) vet ./...

## test: unit tests (compiled and under Yaegi), the real servers, the
## collector against a real ClickHouse, and the plugin inside a real Traefik;
## each part's time at the end
test:
	@scripts/test-parts.sh $(TEST_PARTS)

## test-repeat: the parts of make test N times (default 3), PARALLEL loops at
## once (a busy machine), then per test its passes and failures; PARTS picks
## parts ("unit e2e"), COUNT=20 reruns each unit test within a run
test-repeat:
	@scripts/test-repeat.sh

# the parts' names, for scripts/test-repeat.sh
test-parts:
	@echo $(patsubst test-%,%,$(TEST_PARTS))

# The unit tests run in a zone far from UTC, with daylight saving time
# (UTC+13:45 in December, +12:45 in June), so that a test that depends on
# the machine's zone fails everywhere, not only away from UTC.
UNIT_TZ ?= Pacific/Chatham
test-unit:
	TZ=$(UNIT_TZ) $(GO) test -race -count=$(COUNT) $(GOTESTFLAGS) ./...
	cd collector && TZ=$(UNIT_TZ) $(GO) test -race -count=$(COUNT) $(GOTESTFLAGS) ./...

# The collector's integration tests start real ClickHouse, Redis and, for
# the limits, Traefik with the plugin.
test-integration:
	scripts/install.sh
	cd collector && TRAEFIK_BIN=$$(../scripts/traefik-build.sh) $(GO) test -tags integration -count=1 $(GOTESTFLAGS) ./...

# The collector's ClickHouse code on the current engine, run in process as
# chDB (scripts/chdb-install.sh), beside 18.16 above: migrations, writes,
# lookups, the spend report, and the documented and dashboard queries.
test-chdb:
	cd collector && CHDB_LIB_PATH=$$(../scripts/chdb-install.sh) $(GO) test -tags chdb -count=1 $(GOTESTFLAGS) ./clickhouse/

test-yaegi:
	scripts/yaegi-test.sh $(YAEGIFLAGS)

# internal/stack against the real servers: each part started, used, stopped
# with no process or port left, and a test interrupted half-way (SIGINT)
# leaving nothing behind
test-infra:
	scripts/install.sh
	TRAEFIK_BIN=$$(scripts/traefik-build.sh) $(GO) test -tags integration -count=1 $(GOTESTFLAGS) ./internal/stack

# promtool checks and unit tests of the alert rules (a firing and a silent
# case per alert), their runbooks and the metrics they name
test-alerts:
	scripts/install.sh
	cd collector && $(GO) test -tags alerts -count=1 $(GOTESTFLAGS) -run 'Promtool|Alert|Runbooks' ./internal/deploycheck

test-e2e:
	TRAEFIK_BIN=$$(scripts/traefik-build.sh) $(GO) test -tags e2e -count=1 -v $(GOTESTFLAGS) ./e2e 2>&1 | \
		grep --line-buffered -v '^=== RUN'
	cd e2e/sdk && TRAEFIK_BIN=$$(../../scripts/traefik-build.sh) $(GO) test -tags e2e -count=1 -v $(GOTESTFLAGS) ./... 2>&1 | \
		grep --line-buffered -v '^=== RUN'

# make up and make down for real (cmd/llmtap-stack), on free ports: with
# the mock, then in front of an upstream named by URL.
test-stack:
	scripts/install.sh
	TRAEFIK_BIN=$$(scripts/traefik-build.sh) $(GO) test -tags integration -count=1 $(GOTESTFLAGS) ./cmd/llmtap-stack

# 100,000 requests through the stack of make up, at a rate calibrated to
# the machine: none fails, one row each, flat memory in Traefik and the
# collector (about 4 minutes on 2 cores; cmd/llmtap-stack/soak_test.go)
test-soak:
	scripts/install.sh
	TRAEFIK_BIN=$$(scripts/traefik-build.sh) $(GO) test -tags soak -count=1 -v -timeout 30m $(GOTESTFLAGS) -run '^TestSoak$$' ./cmd/llmtap-stack 2>&1 | \
		grep --line-buffered -v '^=== RUN'

# A short gray test (make soak) in make test: a minute of mixed traffic
# with the four faults.
test-gray:
	@$(MAKE) --no-print-directory soak DURATION=60s

## soak: the gray test: mixed traffic through the stack of make up for
## DURATION (60s), faults on a schedule (the collector hung and restarted,
## ClickHouse stopped, Redis restarted), then a report: errors against the
## plan's 0.1%, rows against requests, memory; the series in .run/gray/
DURATION ?= 60s
soak:
	scripts/install.sh
	DURATION=$(DURATION) TRAEFIK_BIN=$$(scripts/traefik-build.sh) $(GO) test -tags soak -count=1 -v -timeout 0 $(GOTESTFLAGS) -run '^TestGray$$' ./cmd/llmtap-stack 2>&1 | \
		grep --line-buffered -v '^=== RUN'

# The fault suite alone (make test runs it within test-integration)
test-fault:
	scripts/install.sh
	cd collector && TRAEFIK_BIN=$$(../scripts/traefik-build.sh) $(GO) test -tags integration -count=1 -v -run 'Fault' ./cmd/llmtap-collector/ 2>&1 | grep --line-buffered -v '^=== RUN'

## lint: golangci-lint (pinned) on every module, shellcheck on the scripts
lint:
	@gl=$$(scripts/tools.sh golangci-lint); \
	for mod in . collector tools/yaegibench bench/noop e2e/sdk; do (cd $$mod && $$gl run ./...); done
	@# the chdb tests have their own TestMain: linted apart from integration's
	@cd collector && $$(../scripts/tools.sh golangci-lint) run --build-tags chdb ./clickhouse/
	@scripts/install.sh
	shellcheck -x scripts/*.sh .ci/run

## bench: throughput and latency through the real Traefik (bare, noop, llmtap),
## the plugin's per-request cost under Yaegi, ingest into ClickHouse, and
## limit checks against Redis with the latency they add through Traefik
bench:
	cd tools/yaegibench && $(GO) test -run '^$$' -bench . -benchtime 20000x -count 3
	$(GO) run ./bench/run proxy
	$(GO) run ./bench/run ingest
	$(GO) run ./bench/run limits
	$(GO) run ./bench/run stack

## frames: what each interpreted function's frames allocate per request
## under Yaegi, for the yaegibench benchmarks matching BENCH (a Yaegi copy
## that counts them; see docs/plugin.md)
BENCH ?= LLMTapFallback$$|LLMTapProxied
frames:
	scripts/yaegi-frames.sh '$(BENCH)'

## bench-storage: ClickHouse filled to each of ROWS rows (realistic rows
## over 30 days; at 10M about 30 GB of disk on 18.16), then the lookup by
## id, every ClickHouse dashboard panel and the spend report timed, on
## 18.16 and on the current engine (chDB)
ROWS ?= 1000000,3000000,10000000
bench-storage:
	scripts/install.sh
	cd collector && BENCH_ROWS=$(ROWS) $(GO) test -tags integration -count=1 -run '^$$' -bench '^BenchmarkStorage$$' -benchtime 1x -timeout 3h ./clickhouse/
	cd collector && BENCH_ROWS=$(ROWS) CHDB_LIB_PATH=$$(../scripts/chdb-install.sh) $(GO) test -tags chdb -count=1 -run '^$$' -bench '^BenchmarkStorage$$' -benchtime 1x -timeout 3h ./clickhouse/

# cmd/llmtap-stack starts and stops the stack (internal/stack); it is
# built afresh each time, which takes a second when nothing changed.
STACK_CMD = command -v $(GO) >/dev/null || { echo "error: go not found: install Go (https://go.dev/dl) and run again" >&2; exit 1; }; \
	$(GO) build -o bin/llmtap-stack ./cmd/llmtap-stack && bin/llmtap-stack

## demo: ClickHouse, Redis, the collector, the mock LLM upstream and Traefik
## with the plugin; a short mixed workload, a summary from ClickHouse, and the
## stack kept up until Ctrl-C
demo:
	@$(STACK_CMD) demo

## up: the same stack in the background, Traefik sending every path through
## the plugin to UPSTREAM=URL (empty: the mock); ROUTE=NAME (llm), LIMITS=1.
## Ports and tokens in .run/up/env; ports overridable (TRAEFIK_PORT, ...)
up:
	@$(STACK_CMD) up

## down: stop what `make up` started
down:
	@$(STACK_CMD) down

## prices-missing: the models ClickHouse has seen that no price covers,
## with the collector's configuration CONFIG (default: the running make up)
CONFIG ?= $(CURDIR)/.run/up/collector/collector.yaml
prices-missing:
	@test -f "$(CONFIG)" || { echo "error: no $(CONFIG): run make up first, or set CONFIG=path/to/collector.yaml" >&2; exit 1; }
	@cd collector && LLMTAP_LOG_LEVEL=error $(GO) run ./cmd/llmtap-collector -config "$(CONFIG)" prices-missing

clean:
	rm -rf bin .run
