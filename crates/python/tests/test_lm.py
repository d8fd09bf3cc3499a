"""mesascope.lm against independent references: a numpy forward pass on weights read and
dequantized by the `gguf` package (or read from safetensors bytes), written from the Llama
equations with Hugging Face's rotary layout, and tokenizers that do not share mesascope's code
path (a pure-Python GPT-2 byte-level BPE for GGUF vocabularies; the `tokenizers` package on
tokenizer.json for the tiny model)."""

import json
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

import mesascope.lm as lm

REPO = Path(__file__).resolve().parents[3]

# Tolerances on next-token logits (max |difference| over every position and vocabulary entry).
# The tiny model is F32 in both engines: only summation order differs.
TINY_ATOL = 1e-4
# SmolLM2's Q4_1/Q8_0 weights are the same numbers on both sides; mesascope multiplies them with
# unrounded f32 activations (llama.cpp rounds activations to 8 bits, which moves logits by tenths),
# the reference in float64: only f32 rounding over 30 layers separates them.
SMOLLM2_ATOL = 1e-2

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    if n < 2:\n        return n",
    "In 1969, Neil Armstrong became the first person to walk on the Moon. He said",
    "Water boils at 100 degrees Celsius at sea level, but at high altitude it",
]

TEXTS = [
    "Hello, world!",
    "  leading and trailing spaces   ",
    "tabs\tnew\nlines\r\n\n and  double  spaces",
    "digits 1234567890 and 3.14159, 1,000,000",
    "Ünïcödé: 日本語のテキスト, émojis 🙂🚀, Ελληνικά, русский",
    "it's they're we'll I'd you've she's",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "",
    "a" * 50 + " " + "b" * 3,
    "code: for (int i = 0; i < n; ++i) { x[i] += y[i]; }",
]


def smollm2_path():
    env = os.environ.get("MESASCOPE_SMOLLM2")
    if env:
        path = Path(env)
    else:
        cache = Path(os.environ.get("MESASCOPE_CACHE", Path.home() / ".cache" / "mesascope"))
        path = cache / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        msg = f"{path} is missing: run scripts/fetch_smollm2.sh"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


# ------------------------------------------------------------------------------------------------
# Reference weights


def gguf_field(reader, key, default=None):
    field = reader.fields.get(key)
    if field is None:
        return default
    return field.contents()


def gguf_weights(path):
    """Config and float weights (Hugging Face names and layout) of a Llama GGUF file."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(str(path))
    arch = gguf_field(reader, "general.architecture")
    heads = int(gguf_field(reader, f"{arch}.attention.head_count"))
    kv_heads = int(gguf_field(reader, f"{arch}.attention.head_count_kv", heads))
    cfg = dict(
        layers=int(gguf_field(reader, f"{arch}.block_count")),
        heads=heads,
        kv_heads=kv_heads,
        theta=float(gguf_field(reader, f"{arch}.rope.freq_base", 10000.0)),
        eps=float(gguf_field(reader, f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)),
    )
    w = {}
    for t in reader.tensors:
        a = dequantize(t.data, t.tensor_type).astype(np.float64)
        shape = [int(x) for x in reversed(t.shape)]
        w[t.name] = a.reshape(shape)
    d = w["token_embd.weight"].shape[1]
    hd = d // heads

    def unpermute(a, n_head):
        # llama.cpp's converter made rotary pairs adjacent; undo it to use rotate_half.
        out, inp = a.shape
        return a.reshape(n_head, hd // 2, 2, inp).swapaxes(1, 2).reshape(out, inp)

    hf = {
        "embed": w["token_embd.weight"],
        "norm": w["output_norm.weight"],
        "unembed": w.get("output.weight", w["token_embd.weight"]),
    }
    for i in range(cfg["layers"]):
        b = f"blk.{i}."
        hf[i] = dict(
            attn_norm=w[b + "attn_norm.weight"],
            q=unpermute(w[b + "attn_q.weight"], heads),
            k=unpermute(w[b + "attn_k.weight"], kv_heads),
            v=w[b + "attn_v.weight"],
            o=w[b + "attn_output.weight"],
            mlp_norm=w[b + "ffn_norm.weight"],
            gate=w[b + "ffn_gate.weight"],
            up=w[b + "ffn_up.weight"],
            down=w[b + "ffn_down.weight"],
        )
    return cfg, hf


def safetensors_weights(folder):
    """Config and weights of a Hugging Face folder, the safetensors format read by hand."""
    config = json.loads((folder / "config.json").read_text())
    raw = (folder / "model.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    base = 8 + n
    w = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        assert meta["dtype"] == "F32"
        start, end = meta["data_offsets"]
        w[name] = np.frombuffer(raw[base + start : base + end], dtype="<f4").reshape(meta["shape"]).astype(np.float64)
    cfg = dict(
        layers=config["num_hidden_layers"],
        heads=config["num_attention_heads"],
        kv_heads=config["num_key_value_heads"],
        theta=config["rope_theta"],
        eps=config["rms_norm_eps"],
    )
    hf = {
        "embed": w["model.embed_tokens.weight"],
        "norm": w["model.norm.weight"],
        "unembed": w.get("lm_head.weight", w["model.embed_tokens.weight"]),
    }
    for i in range(cfg["layers"]):
        p = f"model.layers.{i}."
        hf[i] = dict(
            attn_norm=w[p + "input_layernorm.weight"],
            q=w[p + "self_attn.q_proj.weight"],
            k=w[p + "self_attn.k_proj.weight"],
            v=w[p + "self_attn.v_proj.weight"],
            o=w[p + "self_attn.o_proj.weight"],
            mlp_norm=w[p + "post_attention_layernorm.weight"],
            gate=w[p + "mlp.gate_proj.weight"],
            up=w[p + "mlp.up_proj.weight"],
            down=w[p + "mlp.down_proj.weight"],
        )
    return cfg, hf


# ------------------------------------------------------------------------------------------------
# Reference forward pass (float64, Hugging Face's LlamaModel written out)


def rms_norm(x, g, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g


def rotate_half(x):
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], -1)


def reference_logits(cfg, w, tokens):
    T = len(tokens)
    x = w["embed"][np.asarray(tokens)]
    d = x.shape[1]
    H, Hkv = cfg["heads"], cfg["kv_heads"]
    hd = d // H
    inv_freq = 1.0 / cfg["theta"] ** (np.arange(0, hd, 2) / hd)
    angles = np.outer(np.arange(T), inv_freq)
    cos = np.cos(np.concatenate([angles, angles], -1))[:, None, :]
    sin = np.sin(np.concatenate([angles, angles], -1))[:, None, :]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for i in range(cfg["layers"]):
        b = w[i]
        h = rms_norm(x, b["attn_norm"], cfg["eps"])
        q = (h @ b["q"].T).reshape(T, H, hd)
        k = (h @ b["k"].T).reshape(T, Hkv, hd)
        v = (h @ b["v"].T).reshape(T, Hkv, hd)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = np.repeat(k, H // Hkv, axis=1)
        v = np.repeat(v, H // Hkv, axis=1)
        scores = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + mask
        p = np.exp(scores - scores.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        a = np.einsum("hts,shd->thd", p, v).reshape(T, H * hd) @ b["o"].T
        x = x + a
        h = rms_norm(x, b["mlp_norm"], cfg["eps"])
        g = h @ b["gate"].T
        m = ((g / (1 + np.exp(-g))) * (h @ b["up"].T)) @ b["down"].T
        x = x + m
    return rms_norm(x, w["norm"], cfg["eps"]) @ w["unembed"].T


def compare_logits(model, cfg, w, prompts, atol):
    worst = 0.0
    for prompt in prompts:
        tokens = model.tokenize(prompt)
        ours = model.logits(tokens)
        ref = reference_logits(cfg, w, tokens)
        assert ours.shape == ref.shape == (len(tokens), model.info["vocab_size"])
        diff = float(np.abs(ours - ref).max())
        worst = max(worst, diff)
        assert diff < atol, f"{prompt!r}: max |logit difference| {diff}"
        assert (ours.argmax(-1) == ref.argmax(-1)).all(), f"{prompt!r}: top-1 differs at {np.nonzero(ours.argmax(-1) != ref.argmax(-1))}"
    return worst


# ------------------------------------------------------------------------------------------------
# Reference tokenizer: GPT-2's byte-level BPE in pure Python


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class ReferenceBpe:
    """Splits on special tokens, then every digit alone (SmolLM's pre-tokenizer), then GPT-2's
    pattern; merges each piece's bytes by rank."""

    GPT2 = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

    def __init__(self, tokens, merges, specials):
        import regex

        self.vocab = {t: i for i, t in enumerate(tokens)}
        self.ranks = {tuple(m.split(" ")): i for i, m in enumerate(merges)}
        self.specials = sorted(specials, key=len, reverse=True)
        self.pattern = regex.compile(self.GPT2)
        self.digits = regex.compile(r"\p{N}")
        self.byte_map = bytes_to_unicode()

    def bpe(self, piece):
        parts = list(piece)
        while len(parts) > 1:
            pairs = [(self.ranks.get((a, b), 1 << 60), j) for j, (a, b) in enumerate(zip(parts, parts[1:]))]
            rank, j = min(pairs)
            if rank == 1 << 60:
                break
            parts = parts[:j] + [parts[j] + parts[j + 1]] + parts[j + 2 :]
        return [self.vocab[p] for p in parts]

    def encode_plain(self, text):
        ids = []
        chunks, last = [], 0
        for m in self.digits.finditer(text):
            chunks += [text[last : m.start()], m.group()]
            last = m.end()
        chunks.append(text[last:])
        for chunk in chunks:
            for word in self.pattern.findall(chunk):
                ids += self.bpe("".join(self.byte_map[b] for b in word.encode("utf-8")))
        return ids

    def encode(self, text):
        ids = []
        while text:
            hits = [(text.find(s), s) for s in self.specials if s in text]
            if not hits:
                ids += self.encode_plain(text)
                break
            at, s = min(hits, key=lambda h: (h[0], -len(h[1])))
            ids += self.encode_plain(text[:at]) + [self.vocab[s]]
            text = text[at + len(s) :]
        return ids


def gguf_reference_tokenizer(path):
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    tokens = gguf_field(reader, "tokenizer.ggml.tokens")
    merges = gguf_field(reader, "tokenizer.ggml.merges")
    types = gguf_field(reader, "tokenizer.ggml.token_type")
    specials = [t for t, ty in zip(tokens, types) if ty in (3, 4)]
    return ReferenceBpe(tokens, merges, specials), reader


# ------------------------------------------------------------------------------------------------
# Tests: the tiny model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    return Path(lm.write_tiny_model(d, "gguf")), Path(lm.write_tiny_model(d, "hf"))


def test_tiny_model_matches_the_numpy_reference_in_both_formats(tiny):
    gguf_path, folder = tiny
    prompts = ["the cat sat on the mat", "digits 0123 and more text in the end", "<|im_start|>user\nhi<|im_end|>"]
    for path, (cfg, w) in [(gguf_path, gguf_weights(gguf_path)), (folder, safetensors_weights(folder))]:
        model = lm.load(path)
        worst = compare_logits(model, cfg, w, prompts, TINY_ATOL)
        print(f"tiny {model.info['format']}: max |logit difference| {worst:.2e}")
    a, b = lm.load(gguf_path), lm.load(folder)
    for p in prompts:
        assert np.abs(a.logits(p) - b.logits(p)).max() < TINY_ATOL
    # Weights kept in f32 for bulk work (a no-op for F32 tensors; the Rust suite checks Q4_1
    # and Q8_0): the same reference logits.
    expanded = lm.load(gguf_path, expand_weights=True)
    assert compare_logits(expanded, *gguf_weights(gguf_path), prompts, TINY_ATOL) < TINY_ATOL


def test_tiny_tokenization_matches_tokenizers_and_the_reference_bpe(tiny):
    from tokenizers import Tokenizer

    gguf_path, folder = tiny
    hf = Tokenizer.from_file(str(folder / "tokenizer.json"))
    ref, _ = gguf_reference_tokenizer(gguf_path)
    for path in tiny:
        model = lm.load(path)
        for text in TEXTS:
            ours = model.tokenize(text, add_bos=False)
            assert ours == hf.encode(text, add_special_tokens=False).ids, (path.name, text)
            assert ours == ref.encode(text), (path.name, text)
            assert model.detokenize(ours) == text


def test_activations_generate_and_errors_from_python(tiny):
    gguf_path, folder = tiny
    model = lm.load(gguf_path)
    info = model.info
    assert info["n_layers"] == 2 and info["d_model"] == 64 and len(info["hook_names"]) == 8
    acts = model.activations(["the cat", "a longer prompt here"], ["blocks.0.resid_post", "blocks.1.mlp_out"])
    assert set(acts) == {"blocks.0.resid_post", "blocks.1.mlp_out"}
    assert acts["blocks.0.resid_post"].shape == (2, 64)
    again = model.activations(["the cat", "a longer prompt here"], ["blocks.0.resid_post"], positions="all")
    n = len(model.tokenize("the cat")) + len(model.tokenize("a longer prompt here"))
    assert again["blocks.0.resid_post"].shape == (n, 64)
    np.testing.assert_array_equal(again["blocks.0.resid_post"][len(model.tokenize("the cat")) - 1], acts["blocks.0.resid_post"][0])

    a = model.generate("hello", max_tokens=10, temperature=0.9, top_p=0.9, seed=5, chat=True)
    pieces = []
    b = model.generate("hello", max_tokens=10, temperature=0.9, top_p=0.9, seed=5, chat=True, stream=pieces.append)
    assert a == b == "".join(pieces)

    with pytest.raises(lm.HookError, match="valid names"):
        model.activations(["x"], ["blocks.9.resid_pre"])
    with pytest.raises(lm.ContextLengthError):
        model.logits([5] * 200)
    bad = gguf_path.parent / "truncated.gguf"
    bad.write_bytes(gguf_path.read_bytes()[:5000])
    with pytest.raises(lm.ModelFileError, match="truncated or corrupt"):
        lm.load(bad)
    (folder.parent / "no-tokenizer").mkdir(exist_ok=True)
    for f in ["config.json", "model.safetensors"]:
        (folder.parent / "no-tokenizer" / f).write_bytes((folder / f).read_bytes())
    with pytest.raises(lm.TokenizerError, match="tokenizer.json"):
        lm.load(folder.parent / "no-tokenizer")
    assert issubclass(lm.ModelConfigError, lm.LmError) and issubclass(lm.LmError, ValueError)


# ------------------------------------------------------------------------------------------------
# Tests: SmolLM2-135M-Instruct (Q4_1)


@pytest.fixture(scope="module")
def smollm2():
    path = smollm2_path()
    return path, lm.load(path)


def test_smollm2_logits_match_the_numpy_reference(smollm2):
    path, model = smollm2
    cfg, w = gguf_weights(path)
    worst = compare_logits(model, cfg, w, PROMPTS, SMOLLM2_ATOL)
    print(f"SmolLM2-135M Q4_1: max |logit difference| {worst:.2e} (tolerance {SMOLLM2_ATOL})")


def test_smollm2_tokenization_matches_the_reference_bpe(smollm2):
    path, model = smollm2
    ref, reader = gguf_reference_tokenizer(path)
    assert gguf_field(reader, "tokenizer.ggml.pre") == "smollm"
    chat = model.chat_prompt([("user", "What is 2+2?")])
    assert chat.startswith("<|im_start|>system\n") and chat.endswith("<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n")
    for text in TEXTS + [chat]:
        ours = model.tokenize(text, add_bos=False)
        assert ours == ref.encode(text), text
        assert model.detokenize(ours) == text
    assert model.tokenize("What is 2+2?", chat=True) == ref.encode(chat)


def test_smollm2_chats_coherently(smollm2):
    _, model = smollm2
    answer = model.generate("What is the capital of France?", chat=True, max_tokens=20)
    assert "Paris" in answer
