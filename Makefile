# Aurora — build, run and test.
CARGO ?= cargo
PYTHON ?= python3
VENV ?= .venv
CONFIG ?= conf/aurora.yaml
# Daemon bookkeeping for `make daemon/reload/upgrade/stop`.
PID_FILE ?= /tmp/aurora.pid
LOG_FILE ?= aurora.log
AURORA = AURORA_PID_FILE=$(PID_FILE) ./target/release/aurora --config $(CONFIG)

.PHONY: all build redis release release-pgo run daemon reload upgrade stop check-config test test-rust test-e2e fuzz fmt lint bench bench-micro bench-deps bench-load bench-paired bench-counts soak deps venv agents

all: build

# Pingora's zlib-ng build needs cmake.
deps:
	@command -v cmake >/dev/null 2>&1 || { \
		echo "cmake missing: installing it with apt-get"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq cmake >/dev/null; }

build: deps
	$(CARGO) build --all-targets

# The shared-limit tests start their own redis-server (tests/common/redis.rs).
redis:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "redis-server missing: installing it with apt-get"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server >/dev/null; }

release: deps
	$(CARGO) build --release

# A profile-guided build (README, "Profile-guided build"): an instrumented build serves
# the load bench's training workload (every face, JSON and streams, limits, the
# production shape), LLVM merges what it counted, and the release build is made again
# laid out by it. The gateway lands in $(PGO_DIR)/aurora, bare Pingora (built the same
# way, so that the bench compares like with like) in $(PGO_DIR)/bare_pingora; both are
# then sent the same workload, every answer checked. An explicit --target keeps the
# build scripts uninstrumented.
PGO_DIR ?= $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)/pgo
HOST_TRIPLE = $(shell rustc -vV | sed -n 's/^host: //p')
LLVM_PROFDATA = $(shell rustc --print sysroot)/lib/rustlib/$(HOST_TRIPLE)/bin/llvm-profdata
PGO_BUILD = $(CARGO) build --release --target $(HOST_TRIPLE) --bin aurora --example bare_pingora
PGO_GENERATED = $(PGO_DIR)/generate/$(HOST_TRIPLE)/release
PGO_USED = $(PGO_DIR)/use/$(HOST_TRIPLE)/release
# A profile is made again only for new instrumented builds, and the builds made from
# it are checked only when new: the build from a profile recompiles every crate.
release-pgo: deps redis
	@[ -x "$(LLVM_PROFDATA)" ] || rustup component add llvm-tools
	RUSTFLAGS="-Cprofile-generate=$(PGO_DIR)/profiles" $(PGO_BUILD) --target-dir $(PGO_DIR)/generate
	[ $(PGO_DIR)/merged.profdata -nt $(PGO_GENERATED)/aurora ] || { \
		rm -rf $(PGO_DIR)/profiles && \
		AURORA_BIN=$(PGO_GENERATED)/aurora \
		AURORA_PINGORA_BIN=$(PGO_GENERATED)/examples/bare_pingora \
			$(CARGO) bench --bench load -- --train && \
		$(LLVM_PROFDATA) merge -o $(PGO_DIR)/merged.profdata $(PGO_DIR)/profiles; }
	RUSTFLAGS="-Cprofile-use=$(PGO_DIR)/merged.profdata" $(PGO_BUILD) --target-dir $(PGO_DIR)/use
	[ $(PGO_DIR)/aurora -nt $(PGO_USED)/aurora ] || { \
		cp $(PGO_USED)/examples/bare_pingora $(PGO_DIR)/bare_pingora && \
		AURORA_BIN=$(PGO_USED)/aurora AURORA_PINGORA_BIN=$(PGO_DIR)/bare_pingora \
			$(CARGO) bench --bench load -- --train && \
		cp $(PGO_USED)/aurora $(PGO_DIR)/aurora; }
	@echo "profile-guided builds: $(PGO_DIR)/aurora, $(PGO_DIR)/bare_pingora"

# Foreground; Ctrl-C stops. `kill -HUP <pid>` reloads the config, `kill -TERM <pid>` drains.
run: release
	$(AURORA)

# Background daemon writing $(PID_FILE), logging to $(LOG_FILE).
daemon: release check-config
	$(AURORA) -d 2>>$(LOG_FILE)
	@echo "aurora daemon started: pid file $(PID_FILE), log $(LOG_FILE)"

# Re-read $(CONFIG) and the environment; a broken file changes nothing (see the log).
reload:
	kill -HUP $$(cat $(PID_FILE))

# Zero-downtime binary upgrade: a new daemon takes the listening sockets over from the
# running one (which gets SIGQUIT and drains). Read the old pid first: the new process
# renames the pid file to $(PID_FILE).old once it has the sockets.
upgrade: release check-config
	old=$$(cat $(PID_FILE)); \
	$(AURORA) -d -u 2>>$(LOG_FILE) & \
	kill -QUIT $$old; \
	wait

# Graceful stop: in-flight requests get `server.grace_period_seconds` to finish.
stop:
	kill -TERM $$(cat $(PID_FILE))

check-config: release
	$(AURORA) --check-config

venv: $(VENV)/.installed

$(VENV)/.installed: tests/e2e/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r tests/e2e/requirements.txt
	touch $@

# The coding-agent CLIs the e2e tests drive, pinned, from npm into an ignored folder
# (node and npm come from apt when missing).
AGENTS_DIR ?= tests/e2e/agents
CLAUDE_CODE_VERSION ?= 2.1.332
CODEX_VERSION ?= 0.171.0
AGENTS_STAMP = $(AGENTS_DIR)/.installed-$(CLAUDE_CODE_VERSION)-$(CODEX_VERSION)
agents: $(AGENTS_STAMP)

$(AGENTS_STAMP):
	@command -v npm >/dev/null 2>&1 || { \
		echo "npm missing: installing node and npm with apt-get"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq nodejs npm >/dev/null; }
	mkdir -p $(AGENTS_DIR)
	@# The registry drops a download now and then: npm retries each fetch, and the
	@# whole install is tried three times, showing npm's own account if all fail.
	@for try in 1 2 3; do \
		npm install --prefix $(AGENTS_DIR) --no-save --no-audit --no-fund --loglevel=error \
			--fetch-retries=5 --fetch-retry-mintimeout=2000 --fetch-retry-maxtimeout=30000 \
			--logs-dir=$(AGENTS_DIR)/.npm-logs \
			@anthropic-ai/claude-code@$(CLAUDE_CODE_VERSION) @openai/codex@$(CODEX_VERSION) \
			&& exit 0; \
		echo "npm install failed (try $$try of 3)"; \
		log=$$(ls -t $(AGENTS_DIR)/.npm-logs/*.log 2>/dev/null | head -n 1); \
		[ -n "$$log" ] && tail -n 15 "$$log"; \
		sleep $$((try * 10)); \
	done; exit 1
	$(AGENTS_DIR)/node_modules/.bin/claude --version
	$(AGENTS_DIR)/node_modules/.bin/codex --version
	touch $@

# Everything: unit and integration tests, then the official SDKs and agent CLIs end to end.
test: build venv agents test-rust test-e2e

test-rust: build redis
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --no-fail-fast; \
	else \
		$(CARGO) test --no-fail-fast; \
	fi

test-e2e: build venv agents
	AURORA_BIN=$(CURDIR)/target/debug/aurora $(VENV)/bin/pytest -q tests/e2e

# The property tests of the decoders and routers (tests/fuzz_*.rs), which `make test`
# runs with a few cases each, with FUZZ_CASES cases per property; each file runs for
# at most FUZZ_SECONDS (four files: 5 minutes in all). Reaching the time limit without
# a failure is a pass.
FUZZ_CASES ?= 20000
FUZZ_SECONDS ?= 75
FUZZ_NAMES = $(patsubst tests/%.rs,%,$(wildcard tests/fuzz_*.rs))
fuzz: deps
	$(CARGO) test --no-run $(addprefix --test ,$(FUZZ_NAMES))
	@for t in $(FUZZ_NAMES); do \
		PROPTEST_CASES=$(FUZZ_CASES) timeout $(FUZZ_SECONDS) $(CARGO) test --test $$t; \
		status=$$?; \
		if [ $$status = 124 ]; then echo "fuzz: $$t stopped after $(FUZZ_SECONDS)s without a failure"; \
		elif [ $$status != 0 ]; then exit $$status; fi; \
	done

fmt:
	$(CARGO) fmt --all

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

# Every bench: the micro benches, then the load bench.
bench: bench-micro bench-load

# Criterion micro benches, kept short: routing, header rewrite, translation.
BENCH_ARGS ?= --warm-up-time 1 --measurement-time 3
bench-micro: deps
	$(CARGO) bench --bench translate --bench proxy -- $(BENCH_ARGS)

# nginx, the load bench's reference proxy (the bench runs its own instance under
# target/bench; apt may also enable the system service, which the bench never uses).
bench-deps:
	@command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { \
		echo "nginx missing: installing it with apt-get"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq nginx >/dev/null; }

# Loopback load test of the release binary against nginx and the mock provider called
# directly; about 16 minutes. Results in target/bench/load.{md,json}. Knobs: see README.
# PGO=1: the load benches measure the profile-guided builds of the gateway and of bare
# Pingora (`make release-pgo`) instead of the plain ones.
ifeq ($(PGO),1)
BENCH_BUILD = release-pgo
AURORA_BENCH_BIN ?= $(PGO_DIR)/aurora
BENCH_ENV = AURORA_BIN=$(AURORA_BENCH_BIN) AURORA_PINGORA_BIN=$(PGO_DIR)/bare_pingora
else
BENCH_BUILD = release
AURORA_BENCH_BIN ?= $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)/release/aurora
BENCH_ENV = AURORA_BIN=$(AURORA_BENCH_BIN)
endif
# Also builds the bare Pingora proxy (the engine alone) and, with the `alloc-count`
# feature in their own profile, the binaries whose allocations per request are counted.
bench-load: $(BENCH_BUILD) bench-deps
	$(CARGO) build --release --example bare_pingora
	$(CARGO) build --profile alloc-count --features alloc-count --bin aurora --example bare_pingora
	$(BENCH_ENV) $(CARGO) bench --bench load

# Only the load bench's side-by-side comparisons: the targets' servers at once, their
# loops interleaved round by round (AURORA_BENCH_PAIRED_ROUNDS, 7), ratios per round.
bench-paired: $(BENCH_BUILD) bench-deps
	$(CARGO) build --release --example bare_pingora
	$(BENCH_ENV) $(CARGO) bench --bench load -- --paired

# Instructions (callgrind) and system calls (strace) per request (passthrough, and the
# gateway translating Chat JSON) for the gateway, bare Pingora and nginx: counts a busy
# machine gives as a quiet one does.
bench-counts: $(BENCH_BUILD) bench-deps
	@for tool in valgrind strace; do command -v $$tool >/dev/null 2>&1 || { \
		echo "$$tool missing: installing it with apt-get"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $$tool >/dev/null; }; done
	$(CARGO) build --release --example bare_pingora
	$(BENCH_ENV) $(CARGO) bench --bench load -- --counts

# Mixed loopback traffic against the release binary for 10 minutes (AURORA_SOAK_SECS),
# with the config file rewritten and reloaded every 10 s; fails on a request that
# should have succeeded, RSS growth over 10 % or a leaked descriptor. Not part of
# `make test`. Knobs: see README (Soak).
soak: release
	AURORA_BIN=$(AURORA_BENCH_BIN) $(CARGO) bench --bench load -- --soak
