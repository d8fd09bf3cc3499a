#!/usr/bin/env python3
"""The noise floor of "clean answers agree with the base model's first 10 greedy tokens": the same
Q4_1 GGUF run by llama.cpp (which rounds each activation row to 8 bits before its quantized dot
products) against mesascope-lm's greedy answers (activations kept in f32), token ids fed in as
mesascope tokenized them, so the only difference is the arithmetic. Not part of CI.

    cargo run --release -p mesascope-lm --example agreement_margins -- MODEL ADAPTER 10 PREFIX
    LLAMA_PYTHON scripts/greedy_vs_llamacpp.py MODEL PREFIX.held-out.json [PREFIX.training.json ...]

(the example writes PREFIX.held-out.json: each prompt's chat tokens and the base model's greedy
answer by mesascope). Prints, per file, how many answers agree over all their tokens, and where the
others first differ.
"""
import json
import sys

from llama_cpp import Llama

model = Llama(model_path=sys.argv[1], n_ctx=1024, n_threads=2, n_batch=512, verbose=False, seed=0)
for path in sys.argv[2:]:
    rows = json.load(open(path))
    agree = 0
    first = []
    for r in rows:
        model.reset()
        model.eval(r["prompt_tokens"])
        ours = r["base_answer"]
        theirs = []
        for _ in ours:
            tok = model.sample(temp=0.0)
            theirs.append(tok)
            model.eval([tok])
        if theirs == ours:
            agree += 1
        else:
            first.append(next(i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b))
    print(f"{path}: llama.cpp's greedy answers equal mesascope's on {agree}/{len(rows)} prompts "
          f"({len(rows[0]['base_answer'])} tokens); the others first differ at tokens {sorted(first)}")
