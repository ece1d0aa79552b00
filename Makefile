# One command sets everything up and starts the chat (`make chat`); one sets up and runs the tests (`make test`).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The versions the last green run used, every package with its hashes (`make lock` regenerates it from pyproject's
# ranges). TORCH=cuda installs torch's default (CUDA) build of the locked version instead of the locked CPU build;
# LOCKED=0 takes the newest versions the ranges allow (what `make test-latest` runs on).
LOCK := requirements.lock
VLLM_LOCK := requirements-vllm.lock
export PIP_VERSION := 26.3
export TORCH ?= cpu
export LOCKED ?= 1
# The npm MCP server the tests start (tests/tools/mcp), installed once into the project, pinned.
NPM_PREFIX := .cache/npm
FS_MCP := $(NPM_PREFIX)/node_modules/@modelcontextprotocol/server-filesystem/package.json
FS_MCP_VERSION := 2026.8.31

.PHONY: setup mcp-servers postgres chromium chat serve test test-latest test-vllm test-phoenix lock lock-vllm fuzz bench lint clean

setup: $(STAMP) mcp-servers postgres chromium

# Debian's chromium when missing and root: tests/tui/test_web.py opens `assistant chat --web` in it (Playwright).
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
		{ command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
		echo "note: chromium not installed; the browser test of assistant chat --web needs it (apt-get install chromium)"; }

# Debian's postgresql when missing and root: the PostgreSQL thread tests start a throwaway cluster with its initdb.
postgres:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		{ command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) || \
		echo "note: PostgreSQL not installed; the PostgreSQL thread tests need it (apt-get install postgresql)"; }

mcp-servers: $(FS_MCP)

# Debian's nodejs/npm when missing and root; without npm the MCP filesystem-server tests fail, saying how to fix it.
$(FS_MCP):
	@command -v npm >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
		(apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null) || \
		echo "note: npm not installed; the MCP filesystem-server tests need it"; }
	@! command -v npm >/dev/null 2>&1 || npm install --prefix $(NPM_PREFIX) --no-audit --no-fund --silent \
		@modelcontextprotocol/server-filesystem@$(FS_MCP_VERSION)

# Reinstall only when the project's metadata or the lock changed; bubblewrap is the sandbox for model-written code.
$(STAMP): pyproject.toml $(LOCK)
	@command -v bwrap >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
		(apt-get update -qq && apt-get install -y -qq bubblewrap libseccomp2 >/dev/null) || \
		echo "note: bubblewrap (bwrap) not installed; the code interpreter will refuse to run without isolation"; }
	PYTHON=$(PYTHON) bash scripts/install_locked.sh $(VENV) $(LOCK) dev
	@touch $(STAMP)

# Moves the lock forward: the newest versions pyproject.toml's ranges allow (UPGRADE=NAME: that package only).
lock:
	bash scripts/lock.sh $(LOCK) pyproject.toml dev

lock-vllm:
	COMPILE_COMMAND="make lock-vllm" bash scripts/lock.sh $(VLLM_LOCK) requirements-vllm.in ""

# The suite on the newest versions the ranges allow, in a venv of its own (no lock): drift shows here first.
test-latest:
	rm -f .cache/latest-venv/.installed
	$(MAKE) test VENV=.cache/latest-venv LOCKED=0

chat: setup
	$(BIN)/assistant chat

# The guarded agent as an HTTP service on the offline smoke policy (tiny local models): http://127.0.0.1:8000/v1
serve: setup
	$(BIN)/assistant serve --policy examples/policies/offline-smoke.yaml

# Two workers, each taking whole test files (module fixtures stay in one process), the heaviest files first
# (tests/conftest.py). Three were faster here (about 540 s against 612 s) but starved timing-bound tests on two
# cores: two of three full runs had one timeout each. TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
test: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -m "not slow and not vllm and not phoenix" -n $(TEST_WORKERS) --dist loadfile

# Integration tests against real vLLM (CPU) servers; vLLM gets its own virtualenv, built once per machine and user.
VLLM_VENV ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/guarded-assistant/vllm-venv
test-vllm: setup
	VLLM_VENV=$(VLLM_VENV) VLLM_LOCK=$(VLLM_LOCK) bash scripts/vllm_venv.sh
	VLLM_VENV=$(VLLM_VENV) $(BIN)/python -m pytest -m vllm tests/vllm

# Traces exported to a real collector: Arize Phoenix, in a virtualenv of its own (scripts/phoenix_venv.sh).
PHOENIX_VENV ?= .cache/phoenix-venv
test-phoenix: setup
	PHOENIX_VENV=$(PHOENIX_VENV) bash scripts/phoenix_venv.sh
	PHOENIX_VENV=$(PHOENIX_VENV) $(BIN)/python -m pytest -m phoenix tests/telemetry

fuzz: setup
	FUZZ_EXAMPLES=20000 $(BIN)/python -m pytest -m slow tests/reliability

bench: setup
	$(BIN)/python bench/turn.py --chart docs/images/bench_turn.png --length-chart docs/images/bench_length.png
	$(BIN)/python bench/serve_load.py --modes unguarded,guarded,batched --chart docs/images/bench_load.png
	$(BIN)/python bench/code_shield.py
	$(BIN)/python bench/first_use.py
	$(BIN)/python bench/guard_isolation.py

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
