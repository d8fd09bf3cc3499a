#!/usr/bin/env python3
"""Writes crates/lm/tests/data/sentencepiece_bpe.json, the reference that
crates/lm/tests/sentencepiece.rs checks GGUF SentencePiece tokenizers against: a small BPE model
trained by the `sentencepiece` package on the project's docs with Llama 2's settings (byte fallback,
digits split, identity normalization, a dummy prefix), its pieces, scores and token types as GGUF
numbers them, and the ids sentencepiece gives a varied set of texts and 150 lines of the corpus.

    python3 -m venv ../spm-venv && ../spm-venv/bin/pip install sentencepiece
    ../spm-venv/bin/python scripts/sentencepiece_fixture.py
Not part of CI; the fixture is committed (about 66 KB).
"""
import glob
import json
import os
import random
import tempfile

import sentencepiece as spm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "crates", "lm", "tests", "data", "sentencepiece_bpe.json")
TEXTS = [
    "Hello, world!", "the cat sat on the mat", "  leading spaces and trailing   ",
    "multiple    spaces    inside", "digits 1234567890 and 3.14159",
    "café, naïve, Ünïcödé: 日本語 — ça va? 🙂 €", "tabs\tand\nnewlines\n\n", "", " ",
    "it's; they're! (we'll) [don't]", "`mesascope lm generate MODEL --chat`",
    "fn main() { println!(\"{}\", x + 1); }", "ＡＢＣ full-width", "x" * 40, "a\u00a0b non-breaking",
]


def token_type(sp, i):
    """GGUF's numbering: 1 normal, 2 unknown, 3 control, 5 unused, 6 byte."""
    if sp.is_unknown(i):
        return 2
    if sp.is_control(i):
        return 3
    if sp.is_byte(i):
        return 6
    if sp.is_unused(i):
        return 5
    return 1


def main():
    docs = sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
    with tempfile.TemporaryDirectory() as tmp:
        corpus = os.path.join(tmp, "corpus.txt")
        with open(corpus, "w", encoding="utf-8") as out:
            for path in docs:
                out.write(open(path, encoding="utf-8").read())
        spm.SentencePieceTrainer.train(
            input=corpus, model_prefix=os.path.join(tmp, "tiny"), model_type="bpe", vocab_size=600,
            byte_fallback=True, split_digits=True, allow_whitespace_only_pieces=True,
            remove_extra_whitespaces=False, normalization_rule_name="identity", add_dummy_prefix=True,
            character_coverage=0.9995, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2,
            max_sentence_length=100000,
        )
        sp = spm.SentencePieceProcessor(model_file=os.path.join(tmp, "tiny.model"))
        lines = [l.strip() for l in open(corpus, encoding="utf-8") if len(l.strip()) > 20]
    random.Random(18).shuffle(lines)
    n = sp.get_piece_size()
    fixture = {
        "trained": f"sentencepiece {spm.__version__}, model_type=bpe, vocab_size={n}, byte_fallback, "
        "split_digits, identity normalization",
        "pieces": [sp.id_to_piece(i) for i in range(n)],
        "scores": [sp.get_score(i) for i in range(n)],
        "types": [token_type(sp, i) for i in range(n)],
        "cases": [{"text": t, "ids": sp.encode(t)} for t in TEXTS + lines[:150]],
    }
    with open(OUT + ".part", "w", encoding="utf-8") as f:
        json.dump(fixture, f, ensure_ascii=False, indent=0)
    os.replace(OUT + ".part", OUT)
    print(f"wrote {OUT}: {n} pieces, {len(fixture['cases'])} texts")


if __name__ == "__main__":
    main()
