# callbox — the two commands of README.md: `make demo` and `make test`.
# Both install what they need on a fresh Debian machine and are idempotent.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := mosquitto coturn iproute2 libspeexdsp1 libopus0 libasound2-dev g++ python3-dev chromium openssh-client gpg
# the RTSP stream (services/rtsp): GStreamer's RTSP server for Debian's python3; ffmpeg is its test client
APT_PACKAGES += python3-gi python3-gst-1.0 gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad ffmpeg
# The page of web/ is bundled with npm; Debian's nodejs/npm only where no npm exists.
NODE_PACKAGES := nodejs npm
WEB_SOURCES := $(wildcard web/index.html web/style.css web/manifest.webmanifest web/build.mjs web/icons/*.png web/src/*.js web/src/*/*.js web/test/*)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
ARGS ?= --scripted

.PHONY: demo test lint typecheck unit bench fuzz deps system-deps web clean aec3-binding aec3-build \
  homeassistant-venv

demo: deps
	$(VENV)/bin/callbox demo $(ARGS)

test: deps homeassistant-venv lint typecheck unit

lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: deps
	$(VENV)/bin/mypy

# pytest exit 5 ("no tests ran") must fail, and it does: make stops on any non-zero exit.
# The browser tests run in a network namespace of their own with loopback only
# (unshare -rn): Chromium offers ICE candidates on every interface it can see.
# Most tests wait on sockets, media and timers rather than compute: they run in parallel,
# one worker per core (pytest-xdist; two per core made timing tests flaky), except those
# marked `alone` (real-time timing, or a change to the namespace the others share), which
# run after, one at a time. The browser tests share one Chromium per pytest process (a fresh
# context, a profile, per test) and run one at a time: two workers kept both cores busy and
# real-time waits failed on a loaded machine. BROWSER_TEST_WORKERS=2 runs them on two workers,
# then the `alone` one.
# (With PYTEST_ARGS naming files that hold no `alone` test, the second run finds no tests and
# make stops there: run pytest on them directly.)
TEST_WORKERS ?= $(shell nproc)
BROWSER_TEST_WORKERS ?= 1
BROWSER_PYTEST := $(PY) -m pytest -p no:cacheprovider --basetemp=/tmp/callbox-browser-tests
ifeq ($(filter-out 0 1,$(BROWSER_TEST_WORKERS)),)
BROWSER_TESTS := exec $(BROWSER_PYTEST) tests/browser $(PYTEST_ARGS)
else
BROWSER_TESTS := $(BROWSER_PYTEST) -n $(BROWSER_TEST_WORKERS) -m "not alone" tests/browser $(PYTEST_ARGS) && \
	exec $(BROWSER_PYTEST) -m alone tests/browser $(PYTEST_ARGS)
endif
unit: deps homeassistant-venv
	CALLBOX_REQUIRE_ALL=1 $(PY) -m pytest -p no:cacheprovider -n $(TEST_WORKERS) -m "not alone" --ignore=tests/browser $(PYTEST_ARGS)
	CALLBOX_REQUIRE_ALL=1 $(PY) -m pytest -p no:cacheprovider -m alone --ignore=tests/browser $(PYTEST_ARGS)
	unshare -rn sh -c 'ip link set lo up && export CALLBOX_REQUIRE_ALL=1 && $(BROWSER_TESTS)'

bench: deps
	$(PY) bench/call_setup.py

# A long fuzz run of the envelope parser, the config validator and the control-socket parser
# (tests/fuzz/, docs/security.md "Fuzzing"): FUZZ_EXAMPLES per test, fresh random seeds.
# `make test` runs the same tests short and derandomized.
FUZZ_EXAMPLES ?= 200000
fuzz: deps
	CALLBOX_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -p no:cacheprovider --timeout=0 tests/fuzz $(PYTEST_ARGS)

deps: system-deps .stamp-venv aec3-binding web

# The browser phone: npm packages from web/package-lock.json, then web/build.mjs: the esbuild
# bundle and the service worker (dist/sw.js) stamped with the shell's version.
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

# The tuned AEC3 binding services/media/_callbox_aec3<EXT_SUFFIX> (gitignored), which
# services/media/aec.py prefers to aec-audio-processing's own AudioProcessor: the .cpp
# compiled against headers from that package's sdist (downloaded into build/, only the
# headers extracted) and linked to the libwebrtc-audio-processing-2.so its wheel bundles.
# Rebuilt when the .cpp or the installed package version changes (build/aec3.version).
# The library's SONAME (…-2.so.1) is not its file name, so no rpath would find it:
# aec.py loads it by path before importing the binding.
# A failed build does not stop `make`: aec.py falls back to the package and logs why,
# and under `make test` tests/media/test_aec.py fails on the missing binding.
AEC3_SO = services/media/_callbox_aec3$(AEC3_EXT_SUFFIX)
AEC3_HEADERS = build/aec_audio_processing-$(AEC3_VERSION)/webrtc-audio-processing

aec3-binding: .stamp-venv
	@mkdir -p build
	@$(PY) -c "from importlib.metadata import version; print(version('aec-audio-processing'))" \
	  > build/aec3.version.new && \
	  { cmp -s build/aec3.version.new build/aec3.version && rm build/aec3.version.new \
	    || mv build/aec3.version.new build/aec3.version; }
	@$(MAKE) --no-print-directory aec3-build \
	  AEC3_VERSION="$$(cat build/aec3.version)" \
	  AEC3_EXT_SUFFIX="$$($(PY) -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')" \
	  AEC3_PKG="$$($(PY) -c 'import importlib.util as u, os; print(os.path.dirname(u.find_spec("aec_audio_processing").origin))')" \
	  || echo "WARNING: tuned AEC3 binding not built; callbox uses aec-audio-processing's default AEC3"

aec3-build: $(AEC3_SO)

$(AEC3_HEADERS)/.extracted:
	$(PY) -m pip download -q --no-deps --no-binary aec-audio-processing \
	  aec-audio-processing==$(AEC3_VERSION) -d build
	tar -xzf build/aec_audio_processing-$(AEC3_VERSION).tar.gz -C build --wildcards \
	  '*/webrtc-audio-processing/webrtc/*.h' \
	  '*/webrtc-audio-processing/subprojects/abseil-cpp-*/absl/*.h' \
	  '*/webrtc-audio-processing/subprojects/abseil-cpp-*/absl/*.inc'
	touch $@

$(AEC3_SO): services/media/_callbox_aec3.cpp build/aec3.version $(AEC3_HEADERS)/.extracted
	g++ -std=c++20 -O2 -fPIC -shared -fvisibility=hidden \
	  -DWEBRTC_POSIX -DWEBRTC_LINUX -DWEBRTC_APM_DEBUG_DUMP=0 -DNDEBUG \
	  -I$(AEC3_HEADERS)/webrtc -I$(wildcard $(AEC3_HEADERS)/subprojects/abseil-cpp-*) \
	  -I"$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')" \
	  $< -o $@.tmp "$(AEC3_PKG)/files/libwebrtc-audio-processing-2.so"
	mv $@.tmp $@

clean:
	rm -rf $(VENV) .stamp-venv .mypy_cache .ruff_cache test-output web/node_modules web/dist

# -- Home Assistant for tests/homeassistant/ (docs/operations.md "Home Assistant") ------------
# A real Home Assistant in its own venv, not the project's: outside the repo so that it
# survives `make clean` and fresh clones (CI reuses it where the machine is kept). Installed
# with the wheel's own homeassistant/package_constraints.txt as pip constraints, plus the
# packages HA's always-loaded integrations and MQTT need (offline HA has no pip at run time);
# josepy 2 breaks acme and so HA's cloud import. The stamp names the version: idempotent.
HA_VERSION := 2024.3.3
HA_VENV ?= $(HOME)/.cache/callbox/homeassistant-$(HA_VERSION)
export HA_VENV  # tests/homeassistant/hass.py finds it there
HA_EXTRA := home-assistant-frontend==20240307.0 paho-mqtt==1.6.1 Pillow janus \
  psutil-home-assistant securetar SQLAlchemy fnv-hash-fast numpy PyTurboJPEG 'josepy<2'

homeassistant-venv: $(HA_VENV)/.stamp-callbox-$(HA_VERSION)

$(HA_VENV)/.stamp-callbox-$(HA_VERSION):
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Home Assistant $(HA_VERSION) needs Python 3.11 or newer"'
	rm -rf $(HA_VENV)
	$(PYTHON) -m venv $(HA_VENV)
	$(HA_VENV)/bin/pip install -q --upgrade pip
	$(HA_VENV)/bin/pip download -q --no-deps homeassistant==$(HA_VERSION) -d $(HA_VENV)/wheel
	$(HA_VENV)/bin/python -c 'import glob, sys, zipfile; \
	  z = zipfile.ZipFile(glob.glob(sys.argv[1] + "/homeassistant-*.whl")[0]); \
	  sys.stdout.write(z.read("homeassistant/package_constraints.txt").decode())' \
	  $(HA_VENV)/wheel > $(HA_VENV)/constraints.txt
	$(HA_VENV)/bin/pip install -q -c $(HA_VENV)/constraints.txt \
	  $(HA_VENV)/wheel/homeassistant-$(HA_VERSION)-*.whl $(HA_EXTRA)
	rm -rf $(HA_VENV)/wheel
	touch $@

# -- The flashable SD image: image-build/, docs/operations.md "Flashing the SD image" --------
# `make image` builds build/image/callbox-<version>.img.zst (+ .sha256), `make image ROLE=door`
# (or indoor) callbox-<version>-door.img.zst, a role image; `make image BASE=raspios` the
# Raspberry Pi OS base (CSI cameras, Pi 5; not built by the tests); `make image-test`
# also boots it in qemu-system-aarch64 and checks it (tests/image/, not collected by `make test`).
# Needs root (mmdebstrap --mode=root, binfmt_misc) and ~6 GB under build/.
IMAGE_APT_PACKAGES := mmdebstrap genimage qemu-user-static binfmt-support arch-test \
  qemu-system-arm mtools dosfstools e2fsprogs zstd curl openssh-client kmod cpio gpg \
  gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross meson ninja-build \
  python3-rich python3-click
IMAGE_DIR := build/image
IMAGE_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
ROLE ?=
BASE ?= debian
IMAGE := $(IMAGE_DIR)/callbox-$(IMAGE_VERSION)$(if $(filter-out debian,$(BASE)),-$(BASE))$(if $(ROLE),-$(ROLE)).img
IMAGE_INPUTS := pyproject.toml $(shell find device services hal image-build -type f \
  -not -path '*/__pycache__/*' -not -name '*.so' 2>/dev/null) $(wildcard web/dist/*)

.PHONY: image image-test image-deps

image: $(IMAGE).zst

$(IMAGE).zst: $(IMAGE_INPUTS) | deps image-deps
	$(SUDO) nice -n 10 /usr/bin/python3 image-build/build.py --out $(IMAGE_DIR) --base $(BASE) \
	  $(if $(ROLE),--role $(ROLE))

image-test: image
	$(SUDO) env CALLBOX_IMAGE_TEST=1 CALLBOX_REQUIRE_ALL=1 $(PY) -m pytest -p no:cacheprovider tests/image $(PYTEST_ARGS)

image-deps:
	@missing=""; \
	for pkg in $(IMAGE_APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing image build packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
