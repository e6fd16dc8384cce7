# cumulo — the two commands a newcomer needs: `make run` and `make test`.
# Everything is installed into a local virtual environment (.venv) on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test check lint typecheck pytest fmt clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# The browser tests drive Debian's Chromium (Playwright with executable_path; its own browser
# download does not work offline). Installed once, only by `make test`; `make run` never needs it.
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@echo "installing Debian's chromium for the browser tests…"
	@{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends chromium >/dev/null; } || { echo "make test needs Debian's \
	chromium at $(CHROMIUM) for the browser tests, and could not install it (apt-get needs \
	root): run 'apt-get install chromium' as root, then make test again." >&2; exit 1; }
	@test -x $(CHROMIUM) || { echo "apt-get installed chromium, but $(CHROMIUM) is \
	still missing." >&2; exit 1; }

## run: the main job. Starts the embedded platform (controller + API, a host agent, the load
## balancer, the storage service), deploys the guestbook to production, prints its URLs and the
## data directory, and follows the logs. Ctrl-C stops everything. State stays in $(DATA)
## (git-ignored; `make run DATA=/elsewhere` moves it, `rm -rf .data` forgets it).
DATA ?= .data
run: $(STAMP)
	@mkdir -p $(DATA)
	exec $(BIN)/cumulo run examples/guestbook --data-dir $(DATA)

## test: lint, type-check and the whole test suite
test: $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy src

pytest: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest -q

fmt: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
