#!/usr/bin/env bash
# Builds the Python package's wheel (abi3, CPython 3.9+) into target/wheels,
# with maturin from the project's venv (.venv, made if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -c 'import maturin' 2>/dev/null ||
  .venv/bin/pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt
rm -rf target/wheels
.venv/bin/maturin build --release --locked --quiet -m bindings/python/Cargo.toml --out target/wheels
ls target/wheels/*.whl
