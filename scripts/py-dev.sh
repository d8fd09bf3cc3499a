#!/usr/bin/env bash
# Builds the Python package's wheel (dev profile: the engine crates are optimized there, see
# Cargo.toml) and installs it into .venv. Used by .ci/run; handy after editing the binding.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
rm -f target/wheels/mesascope-*.whl
"$PY" -m maturin build -q -m crates/python/Cargo.toml --profile dev --strip -o target/wheels
"$PY" -m pip install -q --force-reinstall --no-deps target/wheels/mesascope-*.whl
