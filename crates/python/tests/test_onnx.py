import re

import numpy as np
import onnx
import pytest

import mesascope
import onnx_models as m

H = W = 13  # exit-vs-green's default levels


@pytest.fixture
def save(tmp_path):
    def write(model, name="model.onnx"):
        path = tmp_path / name
        onnx.save(model, path)
        return str(path)

    return write


def test_an_onnx_model_computes_what_the_same_numpy_policy_computes(save):
    """The greedy green-seeker as an ONNX model (Flatten + Gemm) and in numpy: the same logits
    on a batch of 1,024 observations, and the same audit, figure for figure. On 7x7 levels,
    where a greedy step toward green (no planning) mostly gets there."""
    path = save(m.greedy(m.COLOUR_GREEN, 7, 7))
    model = mesascope.load_onnx(path, "exit-vs-green", size=7)
    assert model.obs == "planes"
    v = mesascope.make_vec("exit-vs-green", 1024, split="shift:green", obs="planes", size=7)
    obs, _ = v.reset()
    np.testing.assert_allclose(model(obs), m.greedy_logits(obs, m.COLOUR_GREEN), rtol=1e-5, atol=1e-4)

    numpy_policy = lambda o: m.greedy_logits(o, m.COLOUR_GREEN)
    by_file = mesascope.audit(path, "exit-vs-green", episodes=30, obs="planes", size=7)
    by_numpy = mesascope.audit(numpy_policy, "exit-vs-green", episodes=30, obs="planes", size=7)
    by_model = mesascope.audit(model, "exit-vs-green", episodes=30, size=7)
    for r in (by_numpy, by_model):
        assert r.distributions == by_file.distributions
        assert r.exit_code == by_file.exit_code
    # Heading for green (walls stop it at times), it ends at the decoy far more often than at
    # the exit under shift: pseudo-aligned.
    shift = by_file.distributions["shift:green"]["outcomes"]
    assert shift["proxy:green"] > 5 * shift["intended"], by_file.text
    assert by_file.exit_code == 10 and by_file.proxy == "green", by_file.text


def test_uint8_models_read_the_minigrid_encoding(save):
    model = mesascope.load_onnx(save(m.constant(2, H, W, dtype="uint8")), "exit-vs-green")
    assert model.obs == "u8"
    v = mesascope.make_vec("exit-vs-green", 5)
    logits = model(v.reset()[0])
    assert logits.shape == (5, 4) and (logits.argmax(axis=1) == 2).all()
    with pytest.raises(ValueError, match=r"uint8 observations of shape \[N, 13, 13, 3\]; got an array of shape \(5, 13, 13\)"):
        model(np.zeros((5, 13, 13), dtype=np.uint8))
    with pytest.raises(ValueError, match="dtype float32"):
        model(np.zeros((5, 13, 13, 3), dtype=np.float32))


def test_a_fixed_batch_model_runs_any_batch(save):
    model = mesascope.load_onnx(save(m.constant(3, H, W, batch=1)), "exit-vs-green")
    v = mesascope.make_vec("exit-vs-green", 9, obs="planes")
    assert (model(v.reset()[0]).argmax(axis=1) == 3).all()


@pytest.mark.parametrize(
    "kind, message",
    [
        ("input-name", re.escape("expected one input named 'obs', found 1 ('x')")),
        ("output-name", re.escape("expected one output named 'logits', found 1 ('probs')")),
        ("input-shape", r"input 'obs' has shape \[N, 3, 13, 13\]; expected float32 \[N, 20, 13, 13\]"),
        ("input-type", "element type i64; expected float32"),
        ("output-size", r"output 'logits' has shape \[N, 3\]; expected \[N, 4\]"),
        ("unsupported-op", "Frobnicate"),
        ("unresolved-dims", r"cannot be resolved from the input's shape \(they depend on the data\)"),
    ],
)
def test_models_breaking_the_contract_are_refused_at_load(save, kind, message):
    path = save(m.broken(kind, H, W))
    with pytest.raises(ValueError, match=message):
        mesascope.load_onnx(path, "exit-vs-green")
    with pytest.raises(ValueError, match=message):
        mesascope.audit(path, "exit-vs-green", episodes=3)


def test_non_finite_outputs_are_a_policy_error(save):
    model = mesascope.load_onnx(save(m.broken("nan", H, W)), "exit-vs-green")
    with pytest.raises(mesascope.PolicyError, match="non-finite logits"):
        model(np.zeros((2, 20, H, W), dtype=np.float32))
    with pytest.raises(mesascope.PolicyError, match="non-finite logits"):
        mesascope.audit(model, "exit-vs-green", episodes=3)


@pytest.mark.parametrize("kind", m.HOSTILE)
def test_hostile_models_raise_a_value_error_naming_the_file(save, kind):
    path = save(m.hostile(kind, H, W), f"{kind}.onnx")
    with pytest.raises(ValueError, match=re.escape(f"{kind}.onnx")) as e:
        model = mesascope.load_onnx(path, "exit-vs-green")
        model(np.zeros((2, m.PLANES, H, W), dtype=np.float32))
    assert type(e.value).__name__ != "PanicException"
