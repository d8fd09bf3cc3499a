#!/usr/bin/env bash
# A long fuzzing run of the level parser, the checkpoint loader, the ONNX loader and the
# language-model loaders (GGUF, safetensors, config and tokenizer files; the same
# seeded cases CI runs a few hundred of). CASES sets the cases per target (default 20000), SEED
# the first case (default: the time, so that each run explores new cases). A failure prints the
# seed that reproduces it; keep that input as a regression test beside the fuzz target.
#   scripts/fuzz.sh            # 20,000 cases per target
#   CASES=100000 SEED=0 scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export MESASCOPE_FUZZ_CASES="${CASES:-20000}"
export MESASCOPE_FUZZ_SEED="${SEED:-$(date +%s)}"
echo "fuzzing $MESASCOPE_FUZZ_CASES cases per target from seed $MESASCOPE_FUZZ_SEED" >&2
cargo test -p mesascope-core --test fuzz -- --nocapture
cargo test -p mesascope-learn --test fuzz fuzz_checkpoint_loader -- --nocapture
cargo test -p mesascope-onnx --test fuzz -- --nocapture
cargo test -p mesascope-lm --test fuzz -- --nocapture
