# refine: every target sets itself up from nothing (a fresh clone needs only python3 >= 3.10).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_out

.PHONY: install test lint format demo clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,crf,onnx,openvino]'
	touch $(STAMP)

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check refine_cli tests tools
	$(VENV)/bin/ruff format --check refine_cli tests tools
	$(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff format refine_cli tests tools
	$(VENV)/bin/ruff check --fix refine_cli tests tools

demo: install
	DEMO_DIR=$(DEMO_DIR) bash tools/demo.sh

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .ruff_cache *.egg-info
