# callbox — the two commands of README.md: `make demo` and `make test`.
# Both install what they need on a fresh Debian machine and are idempotent.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := mosquitto iproute2 libspeexdsp1 libasound2-dev g++ chromium
# The page of web/ is bundled with npm; Debian's nodejs/npm only where no npm exists.
NODE_PACKAGES := nodejs npm
WEB_SOURCES := $(wildcard web/index.html web/style.css web/src/*.js web/src/*/*.js web/test/*)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
ARGS ?= --scripted

.PHONY: demo test lint typecheck unit bench deps system-deps web clean

demo: deps
	$(VENV)/bin/callbox demo $(ARGS)

test: deps lint typecheck unit

lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: deps
	$(VENV)/bin/mypy

# pytest exit 5 ("no tests ran") must fail, and it does: make stops on any non-zero exit.
# The browser tests run in a network namespace of their own with loopback only
# (unshare -rn): Chromium offers ICE candidates on every interface it can see.
unit: deps
	CALLBOX_REQUIRE_ALL=1 $(PY) -m pytest -p no:cacheprovider --ignore=tests/browser $(PYTEST_ARGS)
	unshare -rn sh -c 'ip link set lo up && CALLBOX_REQUIRE_ALL=1 exec $(PY) -m pytest -p no:cacheprovider tests/browser $(PYTEST_ARGS)'

bench: deps
	$(PY) bench/call_setup.py

deps: system-deps .stamp-venv web

# The browser phone: npm packages from web/package-lock.json, then the esbuild bundle.
web: web/dist/main.js

web/node_modules/.package-lock.json: web/package.json web/package-lock.json | system-deps
	cd web && npm ci --no-audit --no-fund

web/dist/main.js: web/node_modules/.package-lock.json $(WEB_SOURCES)
	cd web && npm run build

# System packages via apt, only when missing.
system-deps:
	@missing=""; \
	for pkg in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$pkg"; \
	done; \
	command -v npm >/dev/null || missing="$$missing $(NODE_PACKAGES)"; \
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
	rm -rf $(VENV) .stamp-venv .mypy_cache .ruff_cache test-output web/node_modules web/dist
