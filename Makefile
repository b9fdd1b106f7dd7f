# callbox — the two commands of README.md: `make demo` and `make test`.
# Both install what they need on a fresh Debian machine and are idempotent.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := mosquitto iproute2 libspeexdsp1 libasound2-dev g++
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
ARGS ?= --scripted

.PHONY: demo test lint typecheck unit bench deps system-deps clean

demo: deps
	$(VENV)/bin/callbox demo $(ARGS)

test: deps lint typecheck unit

lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: deps
	$(VENV)/bin/mypy

# pytest exit 5 ("no tests ran") must fail, and it does: make stops on any non-zero exit.
unit: deps
	CALLBOX_REQUIRE_ALL=1 $(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS)

bench: deps
	$(PY) bench/call_setup.py

deps: system-deps .stamp-venv

# System packages via apt, only when missing.
system-deps:
	@missing=""; \
	for pkg in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

.stamp-venv: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "callbox needs Python 3.11 or newer"'
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

clean:
	rm -rf $(VENV) .stamp-venv .mypy_cache .ruff_cache test-output
