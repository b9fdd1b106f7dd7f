"""Test harnesses, not shipped: whole sites on one machine for the tests and the benchmarks.

`simsite` (a broker and Call API endpoints on simulated boards), `phonesite` (a door station
and a browser phone in headless Chromium) and `peer_process` (an auto-answering endpoint in a
process of its own, to kill). Tests import them as ``harness.…`` (pytest puts ``tests/`` on
the path); bench scripts first ``import tests_path``.
"""
