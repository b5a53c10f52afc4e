# qecd: the two commands a new user needs are `make run` and `make test`.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.qecd-installed
REPORTS ?= reports

GATE_STAT      ?= min
GATE_PCT       ?= 35
BENCH_STORAGE  ?= file://bench/baseline
# ratio baselines are per Python and machine: bench/baseline/ratios/<key>.json (see gate.py)
RATIO_BASELINE ?=
GATE_BASELINE   = $(if $(RATIO_BASELINE),--baseline $(RATIO_BASELINE))

.PHONY: run test bench bench-gate bench-baseline lint clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/qecd run

test: $(STAMP)
	$(PY) -m pytest -q

# Measure: pytest-benchmark suite (bench/test_*.py, not part of `make test`), the latency
# harness and the same-run ratios; everything lands under $(REPORTS)/ (git-ignored).
bench: $(STAMP)
	@mkdir -p $(REPORTS)
	$(PY) -m pytest bench -q -p no:cacheprovider --benchmark-only \
	    --benchmark-json=$(REPORTS)/benchmarks.json --benchmark-columns=min,median,iqr,max,rounds
	$(VENV)/bin/qecd bench latency --cycle-us 1 --budget-us 10 --shots 200000 \
	    --json $(REPORTS)/latency.json --plot $(REPORTS)
	$(VENV)/bin/qecd bench gate $(GATE_BASELINE) --json $(REPORTS)/gate.json

# CI gate: per-kernel minimum times against the stored pytest-benchmark baseline (fails
# beyond GATE_PCT%; minimums survive a loaded machine, medians swung up to 76% here),
# then ratios measured in one run against their limits (survive slower CI machines).
# Without a baseline for this Python and machine it stops first, saying so (exit 5).
bench-gate: $(STAMP)
	$(VENV)/bin/qecd bench gate --check-baseline $(GATE_BASELINE)
	$(PY) -m pytest bench -q -p no:cacheprovider --benchmark-only \
	    --benchmark-storage=$(BENCH_STORAGE) --benchmark-compare \
	    --benchmark-compare-fail=$(GATE_STAT):$(GATE_PCT)%
	$(VENV)/bin/qecd bench gate $(GATE_BASELINE)

# Refresh both baselines on the reference machine (commit bench/baseline/ afterwards).
bench-baseline: $(STAMP)
	$(PY) -m pytest bench -q -p no:cacheprovider --benchmark-only \
	    --benchmark-storage=$(BENCH_STORAGE) --benchmark-save=baseline
	$(VENV)/bin/qecd bench gate --write-baseline $(GATE_BASELINE)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(REPORTS) .pytest_cache .hypothesis .benchmarks build dist *.egg-info
