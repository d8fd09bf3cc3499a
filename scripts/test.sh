#!/usr/bin/env bash
# The tests (what CI runs, via .ci/run): the Rust workspace, then the Python package, built with
# maturin and installed into .venv (created here, gitignored), and its pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."

# SmolLM2-135M-Instruct's GGUF for the language-model tests (a cache outside the repository).
scripts/fetch_smollm2.sh >/dev/null
cargo test --workspace

command -v python3 >/dev/null || { echo "error: python3 (3.9 or later) not found; the Python package's tests need it" >&2; exit 1; }
[ -x .venv/bin/python ] || python3 -m venv .venv
# Pinned: the versions the suite was written against (the `onnx` package builds its test models;
# `gguf`, `tokenizers` and `regex` are the language-model tests' independent references).
.venv/bin/python -m pip install -q --disable-pip-version-check \
    maturin==1.16.0 gymnasium==1.4.0 numpy==2.4.6 pytest==9.2.0 onnx==1.23.2 \
    gguf==0.19.0 tokenizers==0.23.3 regex==2026.12.2 'ray[tune]==2.60.0' pandas==3.1.1
scripts/py-dev.sh
.venv/bin/python -m pytest -q crates/python/tests
