# refine: every target sets itself up from nothing (a fresh clone needs only python3 >= 3.10).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_out

.PHONY: install test test-quick lint format demo clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,crf,onnx,openvino]'
	touch $(STAMP)

# Two pytest workers (pytest-xdist), one module's tests on one worker (its module fixtures are built once).
test: install
	$(PY) -m pytest -q -n 2 --dist loadscope

# The edit-test loop: everything but the end-to-end tests marked `slow` (`make test` and CI run those too).
test-quick: install
	$(PY) -m pytest -q -n 2 --dist loadscope -m "not slow"

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
