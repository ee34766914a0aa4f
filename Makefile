# Aurora — build, run and test.
CARGO ?= cargo
PYTHON ?= python3
VENV ?= .venv
CONFIG ?= conf/aurora.yaml

.PHONY: all build release run check-config test test-rust test-e2e fmt lint bench deps venv

all: build

# Pingora's zlib-ng build needs cmake.
deps:
	@command -v cmake >/dev/null 2>&1 || { \
		echo "cmake missing: installing it with apt-get"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq cmake >/dev/null; }

build: deps
	$(CARGO) build --all-targets

release: deps
	$(CARGO) build --release

run: release
	./target/release/aurora --config $(CONFIG)

check-config: release
	./target/release/aurora --config $(CONFIG) --check-config

venv: $(VENV)/.installed

$(VENV)/.installed: tests/e2e/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r tests/e2e/requirements.txt
	touch $@

# Everything: unit and integration tests, then the official SDKs end to end.
test: build venv test-rust test-e2e

test-rust: build
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --no-fail-fast; \
	else \
		$(CARGO) test --no-fail-fast; \
	fi

test-e2e: build venv
	AURORA_BIN=$(CURDIR)/target/debug/aurora $(VENV)/bin/pytest -q tests/e2e

fmt:
	$(CARGO) fmt --all

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

bench: deps
	$(CARGO) bench
