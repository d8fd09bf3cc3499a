"""Language models on a CPU: Llama-family decoders (Llama 2/3, SmolLM2, Mistral, Qwen2) from a GGUF
file (weights kept quantized) or a Hugging Face folder, with named hook points. See docs/lm.md.

    model = mesascope.lm.load("SmolLM2-135M-Instruct.Q4_1.gguf")
    model.generate("What is the capital of France?", chat=True, max_tokens=32)
    model.activations(["a prompt", "another"], ["blocks.10.resid_post"])   # {name: [2, d_model]}

Errors are subclasses of ``LmError`` (a ``ValueError``): ``ModelFileError``,
``UnsupportedModelError``, ``ModelConfigError``, ``TokenizerError``, ``ContextLengthError``,
``HookError``.
"""

import os

from ._core import (
    ContextLengthError,
    HookError,
    LanguageModel,
    LmError,
    ModelConfigError,
    ModelFileError,
    TokenizerError,
    UnsupportedModelError,
    lm_write_tiny_model,
)


def load(path):
    """Loads a GGUF file or a Hugging Face folder (``config.json``, safetensors, ``tokenizer.json``).

    The model has ``.generate(prompt, max_tokens=128, temperature=0.0, top_p=1.0, seed=0, chat=False,
    stream=None)``, ``.tokenize(text, chat=False)``, ``.detokenize(ids)``, ``.logits(prompt)`` (numpy
    ``[T, vocab]``), ``.activations(prompts, points, positions="last"|"all")`` (dict of numpy arrays)
    and ``.info`` (dict). A prompt is text or a list of token ids."""
    return LanguageModel(os.fspath(path))


def write_tiny_model(directory, format="gguf"):
    """Writes the tiny random-weight Llama model of the tests (``format``: "gguf" or "hf") into
    ``directory`` and returns its path."""
    return lm_write_tiny_model(os.fspath(directory), format)


__all__ = [
    "ContextLengthError",
    "HookError",
    "LanguageModel",
    "LmError",
    "ModelConfigError",
    "ModelFileError",
    "TokenizerError",
    "UnsupportedModelError",
    "load",
    "write_tiny_model",
]
