# Two commands for a fresh machine: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-slow bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# torch first, pinned: a bare `torch` would pull several GB of CUDA wheels
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	# SpikingJelly is an independent reference in tests and benchmarks; its deps would pull torchvision
	$(BIN)/pip install --quiet --no-deps spikingjelly loguru
	# the NIR readers of the tests (snnTorch, Sinabs, Norse), pinned in pyproject's nir-readers extra
	$(BIN)/pip install --quiet --no-deps $$($(BIN)/python -c "import tomllib; print(' '.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['nir-readers']))")
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/snnexit run --out runs/default

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) runs
