# `make demo` and `make test` each create or update .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip -q --disable-pip-version-check

.PHONY: demo test install clean

$(VENV)/.core: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -U pip
	$(PIP) install -e .
	# tinysoundfont declares pyaudio (playback only, fails to build); we only render.
	$(PIP) install --no-deps tinysoundfont==0.3.7
	touch $@

$(VENV)/.test: $(VENV)/.core
	$(PIP) install -e ".[test]"
	touch $@

install: $(VENV)/.core

demo: $(VENV)/.core
	$(PY) -m hear_jax.main --config=configs/demo.py

test: $(VENV)/.test
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) runs
