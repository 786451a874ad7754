# Two commands on a fresh machine with Python 3.11 and pip:  make demo  ·  make test
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-all bench lab clean-venv

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name l2lab --display-name "Python 3 (l2lab)" >/dev/null
	@touch $@

demo: $(STAMP)
	$(VENV)/bin/l2lab demo

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" -p no:cacheprovider

test-all: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(PY) -m bench

lab: $(STAMP)
	$(PY) -m pip install --quiet "jupyterlab>=4.2,<5"
	$(VENV)/bin/jupyter lab research/

clean-venv:
	rm -rf $(VENV)
