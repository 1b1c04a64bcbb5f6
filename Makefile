# Kairos: one Makefile for every language. `make help` lists the targets.
#
# The first run installs what is missing (apt packages, the uv-managed Python venv from uv.lock, Go
# tool binaries from tools/go.mod); later runs find the stamps and skip straight to the work.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

ROOT  := $(CURDIR)
TOOLS := $(ROOT)/.tools
STAMP := $(TOOLS)/stamps
BUILD := $(ROOT)/build
export PATH := $(TOOLS)/bin:$(ROOT)/.venv/bin:$(PATH)
export UV_PYTHON_DOWNLOADS := never
export GOFLAGS := -buildvcs=false

UV_VERSION := 0.13.8
UV := $(TOOLS)/uv/bin/uv
PY := $(ROOT)/.venv/bin/python
# Debian packages the build and tests need (C/C++ toolchain, nanopb runtime, GoogleTest, clang-format).
APT_PACKAGES := build-essential cmake ninja-build libnanopb-dev libgtest-dev googletest clang-format git
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
GO_PKGS = $(shell go list -m -f '{{.Dir}}/...')
CPP_BUILD := $(BUILD)/cpp
# What `make gen` writes, for the drift check: everything generated lives under gen/ (gen/go, gen/c, gen/python).
GENERATED := gen

# Each component adds its own targets from mk/<component>.mk to these lists, so components grow
# without touching each other's lines here. They run after the shared steps of test, bench and lint.
TEST_TARGETS :=
BENCH_TARGETS :=
LINT_TARGETS :=
include $(sort $(wildcard mk/*.mk))

##@ Main

.PHONY: help
help: ## List the targets, one line each
	@awk 'BEGIN {FS = ":.*## "} /^##@/ {printf "\n%s\n", substr($$0, 5)} /^[a-zA-Z_-]+:.*## / {printf "  make %-11s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: demo
demo: setup cpp-build ## The main job: train if needed, start the stack, replay real data through the bridge, live view, report
	$(ROOT)/.venv/bin/kairos demo $(DEMO_ARGS)

.PHONY: wirecheck
wirecheck: setup cpp-build ## Cross-check the wire contract in Python, Go and C on real ticks
	go build -o $(TOOLS)/bin/kairos-framecat ./go/collector/cmd/kairos-framecat
	$(PY) -m kairos.wirecheck --build-dir $(BUILD)/wirecheck --framecat-go "$(TOOLS)/bin/kairos-framecat" --framecat-c "$(CPP_BUILD)/kairos-framecat"

.PHONY: test
test: setup cpp-build $(STAMP)/compose ## Run every test (Go, Python, C/C++); builds what the tests need (compose for its config tests)
	go test -race -count=1 $(GO_PKGS)
	$(PY) -m pytest
	ctest --test-dir $(CPP_BUILD) --output-on-failure
	$(MAKE) wirecheck
	@for t in $(TEST_TARGETS); do $(MAKE) $$t; done

.PHONY: lint
lint: setup $(STAMP)/compose ## Lint everything: buf lint/format/breaking, go vet/gofmt/staticcheck, ruff, mypy, clang-format, compose
	buf lint
	buf format -d --exit-code
	@if git rev-parse --verify -q main >/dev/null && git cat-file -e main:buf.yaml 2>/dev/null; then \
	  echo "buf breaking --against main"; buf breaking --against "$$(git rev-parse --git-common-dir)#branch=main"; \
	else echo "buf breaking: skipped, main has no buf.yaml yet"; fi
	go vet $(GO_PKGS)
	@out=$$(gofmt -l gen/go go); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	staticcheck $(GO_PKGS)
	ruff check python tools bench tools/protoc-gen-grpc_python
	ruff format --check python tools bench tools/protoc-gen-grpc_python
	mypy -p kairos
	clang-format --dry-run --Werror $$(git ls-files 'cpp/*.cpp' 'cpp/*.h' 'cpp/*.c')
	@compose="docker compose"; command -v docker >/dev/null || compose=$(TOOLS)/docker/cli-plugins/docker-compose; \
	echo "$$compose config --quiet"; KAIROS_POSTGRES_PASSWORD=lint DOCKER_CONFIG=$(TOOLS)/docker $$compose -f docker-compose.yml config --quiet
	@for t in $(LINT_TARGETS); do $(MAKE) $$t; done

.PHONY: gen
gen: setup ## Regenerate every stub from proto/ (Go, Python, betterproto2 SDK, nanopb C)
	tools/gen.sh

.PHONY: gen-check
gen-check: gen ## Fail if `make gen` changes anything (generated code must be committed)
	@changes=$$(git status --porcelain -- $(GENERATED)); \
	if [ -n "$$changes" ]; then echo "make gen changed generated files; commit them:"; echo "$$changes"; git diff --stat -- $(GENERATED); exit 1; fi
	@echo "make gen: no drift"

.PHONY: golden
golden: setup ## Re-encode the golden vectors (proto/testdata/golden/*.txtpb -> .binpb)
	$(PY) tools/golden.py

.PHONY: bench
bench: setup cpp-build ## Run every benchmark; each writes bench/results/<name>.json
	$(PY) bench/contracts.py --out bench/results/contracts.json
	@for t in $(BENCH_TARGETS); do $(MAKE) $$t; done

.PHONY: clean
clean: ## Remove build outputs and caches (keeps the venv and installed tools)
	rm -rf $(BUILD) $(TOOLS)/gen .pytest_cache .mypy_cache .ruff_cache
	find python tools bench -name __pycache__ -type d -prune -exec rm -rf {} +

.PHONY: distclean
distclean: clean ## Also remove the venv and installed tools (the next make reinstalls them)
	rm -rf .venv $(TOOLS)

##@ Set-up (run by the targets above when needed)

.PHONY: setup
setup: $(STAMP)/apt .venv/.synced $(STAMP)/gotools ## Install everything missing (idempotent)

$(STAMP)/apt: Makefile $(wildcard mk/*.mk)
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing" $$missing; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@mkdir -p $(@D) && touch $@

$(UV):
	python3 -m venv $(TOOLS)/uv
	$(TOOLS)/uv/bin/pip install --quiet uv==$(UV_VERSION)

.venv/.synced: $(UV) pyproject.toml gen/python/pyproject.toml uv.lock
	$(UV) sync --locked --all-extras --quiet
	@touch $@

$(STAMP)/gotools: tools/go.mod tools/go.sum
	cd tools && GOWORK=off go build -o $(TOOLS)/bin/ tool
	@mkdir -p $(@D) && touch $@

# docker compose v2 as a docker CLI plugin in a private DOCKER_CONFIG (the first build takes ~2 min).
$(STAMP)/compose: tools/compose/go.mod tools/compose/go.sum
	cd tools/compose && GOWORK=off go build -o $(TOOLS)/docker/cli-plugins/docker-compose github.com/docker/compose/v2/cmd
	@mkdir -p $(@D) && touch $@

.PHONY: cpp-build
cpp-build: $(STAMP)/apt .venv/.synced ## Build the C/C++ targets (nanopb contract library, bridge, Python extensions incl. the feature kernel, tests, tools, benchmarks)
	cmake -S cpp/mt5_bridge -B $(CPP_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release \
	  -Dpybind11_DIR="$$($(PY) -m pybind11 --cmakedir)" -DPython3_EXECUTABLE=$(PY) >/dev/null
	cmake --build $(CPP_BUILD)
	cmake -S cpp/features -B $(BUILD)/cpp-features -G Ninja -DCMAKE_BUILD_TYPE=Release \
	  -Dpybind11_DIR="$$($(PY) -m pybind11 --cmakedir)" -DPython3_EXECUTABLE=$(PY) >/dev/null
	cmake --build $(BUILD)/cpp-features
