# Two commands on a fresh machine with Python 3.11 and make:
#   make demo   embedded broker + simulated traffic + live detection + report
#   make test   the test suite (installs what it needs, Alertmanager included)
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench install system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,embedded]'
	touch $(STAMP)

install: $(STAMP)

# Alertmanager for its integration test (Debian's prometheus-alertmanager), and
# headless Chromium for the page tests (Debian's chromium).
# On a workstation without root or apt-get those tests are skipped with their reason;
# with CI set, a failed install fails the run (and so would the skipped test).
system-deps:
	@bash scripts/install-alertmanager.sh || [ -z "$$CI" ]
	@bash scripts/install-chromium.sh || [ -z "$$CI" ]

# Two pytest workers (pytest-xdist): the suite is half waiting on brokers and timers, so on two
# cores it takes ~13 min instead of ~22 (TEST_WORKERS=0 runs it in one process).
TEST_WORKERS ?= 2

test: $(STAMP) system-deps
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

demo: $(STAMP)
	$(BIN)/python -m detector.demo

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache out
