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
	# The torch bridge's tests run the real HEAR baselines; their wheels pin
	# ancient numpy/TF, so they come without their declared dependencies.
	$(PIP) install torch==2.13.0 "setuptools<81" resampy==0.4.3 librosa
	$(PIP) install --no-deps torchcrepe==0.0.24 hearbaseline==2021.1.1
	touch $@

install: $(VENV)/.core

demo: $(VENV)/.core
	$(PY) -m hear_jax.main --config=configs/demo.py

test: $(VENV)/.test
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) runs
