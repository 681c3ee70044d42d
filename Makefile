# Two self-sufficient targets: `make demo` and `make test`.
# TORCH_SPEC picks the torch build pip installs, e.g. TORCH_SPEC=torch==2.13.0 for a local CPU wheel.
TORCH_SPEC ?= torch
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: demo test venv lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)

venv: $(PY)
	$(PIP) "$(TORCH_SPEC)"
	$(PIP) -e .

# A second `make demo` moves the first run aside (outputs/quickstart.old-DATE; the log says where)
demo: venv
	$(PY) tools/train.py --config configs/quickstart.yaml --overwrite

test: venv
	$(PIP) -e ".[dev]"
	$(PY) -m pytest -q tests

lint: venv
	$(VENV)/bin/ruff check reid tools scripts tests

clean:
	rm -rf outputs .cache .pytest_cache
