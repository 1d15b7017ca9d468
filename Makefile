# Two quick-start targets: `make run` (the main job) and `make test`. Both set up .venv first, each
# with what it needs: `run` the base install and the analysis extra, `test` the dev extra (every role
# the tests exercise, Triton included). Separate stamps, so `make run` never pulls in the test tools.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
VENV_STAMP := $(VENV)/.created
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test lint browser
$(VENV_STAMP):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU build of torch first, so the package's `torch>=2.4` needs nothing more.
	$(BIN)/pip install -q torch==2.13.0
	touch $(VENV_STAMP)

$(RUN_STAMP): pyproject.toml $(VENV_STAMP)
	$(BIN)/pip install -q -e '.[analysis]'
	touch $(RUN_STAMP)

$(TEST_STAMP): pyproject.toml $(VENV_STAMP)
	$(BIN)/pip install -q -e '.[dev]'
	touch $(TEST_STAMP)

run: $(RUN_STAMP)
	$(BIN)/mlc run mlds-smoke --workdir runs/mlds-smoke

# Debian's chromium renders the report and the server's pages in the browser tests: installed here
# where it is missing on a Debian machine we may install on (root); else those tests skip and say why.
CHROMIUM := /usr/bin/chromium
browser:
	@if [ ! -x $(CHROMIUM) ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get install -y -q chromium >/dev/null 2>&1 || \
		(apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null); fi
	@[ -x $(CHROMIUM) ] || echo "note: no $(CHROMIUM): the browser tests will be skipped (apt-get install chromium)"

test: $(TEST_STAMP) browser
	$(BIN)/python -m pytest -q

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests benchmarks
