# The two Quickstart commands (see README.md) and the checks CI runs.
# `uv` comes from PyPI; everything else is pinned in uv.lock.
UV ?= $(shell command -v uv 2>/dev/null || echo "python3 -m uv")

.PHONY: setup demo test lint bench

setup:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --locked --compile-bytecode
	@# Where Python is told not to write bytecode (PYTHONDONTWRITEBYTECODE), every
	@# process (each worker, each test's server) would compile what it imports anew.
	$(UV) run --locked python -m compileall -q qcat services partition

demo: setup
	$(UV) run qcat demo

test: setup
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy
	$(UV) run pytest -n 2

bench: setup
	$(UV) run python -m bench.ingest
