"""Tiny ONNX policies built with the ``onnx`` package (no deep-learning framework): linear maps
from the observation to logits whose behaviour is known, and broken models for the load-time
checks. ``crates/onnx/tests/fixtures/make_fixtures.py`` writes some of them for the Rust tests.
"""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

PLANES = 20
# Plane indices in mesascope's order (object planes, then colours, then states).
OBJECT_GOAL, OBJECT_AGENT, COLOUR_GREEN = 8, 10, 12


def _model(nodes, initializers, shape, dtype, batch, input_name, output_name, n_out, extra_opsets=()):
    elem = {"float32": TensorProto.FLOAT, "uint8": TensorProto.UINT8, "int64": TensorProto.INT64}[dtype]
    graph = helper.make_graph(
        nodes,
        "policy",
        [helper.make_tensor_value_info(input_name, elem, [batch, *shape])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [batch, n_out])],
        initializers,
    )
    opsets = [helper.make_opsetid("", 13), *(helper.make_opsetid(d, 1) for d in extra_opsets)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    if not extra_opsets:
        onnx.checker.check_model(model)
    return model


def _as_float(input_name, dtype, nodes):
    if dtype == "float32":
        return input_name
    nodes.append(helper.make_node("Cast", [input_name], ["obs_f"], to=TensorProto.FLOAT))
    return "obs_f"


def linear(weight, bias, shape, dtype="float32", batch="N", input_name="obs", output_name="logits"):
    """``logits = flatten(obs) @ weight.T + bias``: Flatten + Gemm (a Cast first for uint8)."""
    weight = np.asarray(weight, dtype=np.float32)
    bias = np.asarray(bias, dtype=np.float32)
    nodes = []
    x = _as_float(input_name, dtype, nodes)
    nodes.append(helper.make_node("Flatten", [x], ["flat"], axis=1))
    nodes.append(helper.make_node("Gemm", ["flat", "W", "B"], [output_name], transB=1))
    inits = [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "B")]
    return _model(nodes, inits, shape, dtype, batch, input_name, output_name, weight.shape[0])


def biased(bias, shape, dtype="float32", batch="N", input_name="obs", output_name="logits"):
    """``logits = 0 * sum(obs) + bias``: the same logits for every observation, in a few hundred
    bytes (the model still reads its input, so its shape and type are checked)."""
    bias = np.asarray(bias, dtype=np.float32)
    nodes = []
    x = _as_float(input_name, dtype, nodes)
    nodes += [
        helper.make_node("Flatten", [x], ["flat"], axis=1),
        helper.make_node("ReduceSum", ["flat", "axes"], ["total"], keepdims=1),
        helper.make_node("Mul", ["total", "zero"], ["nothing"]),
        helper.make_node("Add", ["nothing", "B"], [output_name]),
    ]
    inits = [
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"),
        numpy_helper.from_array(np.zeros(1, dtype=np.float32), "zero"),
        numpy_helper.from_array(bias, "B"),
    ]
    return _model(nodes, inits, shape, dtype, batch, input_name, output_name, len(bias))


def constant(action, h, w, n_actions=4, dtype="float32", batch="N"):
    """Always the same action (its logit 20 above the others)."""
    shape = (PLANES, h, w) if dtype == "float32" else (h, w, 3)
    bias = np.zeros(n_actions)
    bias[action] = 20.0
    return biased(bias, shape, dtype=dtype, batch=batch)


def greedy(target_plane, h, w, scale=4.0):
    """Planes input: steps toward the cells lit in ``target_plane`` along the larger of the row
    and column differences (no wall avoidance): ``logit(right) = scale * (target column - agent
    column)``, and likewise for the other moves."""
    rows, cols = np.mgrid[0:h, 0:w]
    weight = np.zeros((4, PLANES, h, w))
    for a, (grid, sign) in enumerate([(rows, -1), (cols, 1), (rows, 1), (cols, -1)]):
        weight[a, target_plane] = sign * grid
        weight[a, OBJECT_AGENT] = -sign * grid
    return linear(scale * weight.reshape(4, -1), np.zeros(4), (PLANES, h, w))


def greedy_logits(obs, target_plane, scale=4.0):
    """What ``greedy`` computes, in numpy, for a ``[N, C, H, W]`` batch."""
    n, _, h, w = obs.shape
    rows, cols = np.mgrid[0:h, 0:w]
    t, a = obs[:, target_plane], obs[:, OBJECT_AGENT]
    tr, tc = (t * rows).sum((1, 2)), (t * cols).sum((1, 2))
    ar, ac = (a * rows).sum((1, 2)), (a * cols).sum((1, 2))
    return (scale * np.stack([ar - tr, tc - ac, tr - ar, ac - tc], axis=1)).astype(np.float32)


def unsupported_op(h, w):
    """A graph with an operator no ONNX runtime knows."""
    node = helper.make_node("Frobnicate", ["obs"], ["logits"], domain="mesascope.test")
    return _model([node], [], (PLANES, h, w), "float32", "N", "obs", "logits", 4, extra_opsets=["mesascope.test"])


def broken(kind, h, w):
    """Models that break the contract in one way each."""
    planes = (PLANES, h, w)
    if kind == "input-name":
        return biased(np.zeros(4), planes, input_name="x")
    if kind == "output-name":
        return biased(np.zeros(4), planes, output_name="probs")
    if kind == "input-shape":
        return biased(np.zeros(4), (3, h, w))
    if kind == "input-type":
        return biased(np.zeros(4), planes, dtype="int64")
    if kind == "output-size":
        return biased(np.zeros(3), planes)
    if kind == "nan":
        return biased(np.array([0, np.nan, 0, 0]), planes)
    if kind == "unsupported-op":
        return unsupported_op(h, w)
    if kind == "unresolved-dims":
        return data_dependent_rows(h, w)
    if kind in HOSTILE:
        return hostile(kind, h, w)
    raise ValueError(kind)


def with_activation(kind, h, w):
    """The constant right-mover of ``constant`` with one extra output, ``layer``, as an
    activation: ``right`` the flattened planes (float32 ``[N, C*H*W]``), or one that breaks the
    activation contract: ``type`` (int64), ``batch`` (``[C*H*W, N]``: no batch dimension first),
    ``nan`` (planes / 0: NaN and infinities)."""
    model = constant(1, h, w)
    g = model.graph
    node = helper.make_node
    f = TensorProto.FLOAT
    if kind == "right":
        out = helper.make_tensor_value_info("layer", f, ["N", PLANES * h * w])
        g.node.append(node("Identity", ["flat"], ["layer"]))
    elif kind == "type":
        out = helper.make_tensor_value_info("layer", TensorProto.INT64, ["N", PLANES * h * w])
        g.node.append(node("Cast", ["flat"], ["layer"], to=TensorProto.INT64))
    elif kind == "batch":
        out = helper.make_tensor_value_info("layer", f, [PLANES * h * w, "N"])
        g.node.append(node("Transpose", ["flat"], ["layer"], perm=[1, 0]))
    elif kind == "nan":
        out = helper.make_tensor_value_info("layer", f, ["N", PLANES * h * w])
        g.node.append(node("Div", ["flat", "zero"], ["layer"]))
    else:
        raise ValueError(kind)
    g.output.append(out)
    onnx.checker.check_model(model)
    return model


ACTIVATION_KINDS = ["right", "type", "batch", "nan"]


BROKEN = ["input-name", "output-name", "input-shape", "input-type", "output-size", "nan", "unsupported-op", "unresolved-dims"]

# Models whose graph is well-formed protobuf but whose operators would crash a runtime or ask it
# for tens of gigabytes: each must be refused at load with a message naming the file.
HOSTILE = [
    "gather-index",
    "int-div-zero",
    "slice-step-zero",
    "transpose-perm",
    "constant-of-shape-negative",
    "constant-of-shape-huge",
    "expand-huge",
    "opset-9999",
]


def hostile(kind, h, w):
    """The constant model of ``biased`` whose logits also add ``0 * sum(branch)``, where the
    branch is one operator on constants that is out of range (``gather-index``,
    ``slice-step-zero``, ``transpose-perm``), divides integers by zero (``int-div-zero``), has a
    negative or enormous shape (``constant-of-shape-*``, ``expand-huge``); or the model declares
    the standard operator set version 9999 (``opset-9999``)."""
    if kind == "opset-9999":
        model = biased(np.zeros(4), (PLANES, h, w))
        model.opset_import[0].version = 9999
        return model
    c = numpy_helper.from_array
    node = helper.make_node
    i64 = lambda name, v: c(np.array(v, dtype=np.int64), name)  # noqa: E731
    f32 = lambda name, v: c(np.array(v, dtype=np.float32), name)  # noqa: E731
    if kind == "gather-index":
        branch = [node("Gather", ["data", "index"], ["branch"], axis=0)]
        inits = [f32("data", [1.0, 2.0, 3.0, 4.0]), i64("index", [10])]
    elif kind == "int-div-zero":
        branch = [
            node("Div", ["one", "zero_i"], ["quot"]),
            node("Cast", ["quot"], ["branch"], to=TensorProto.FLOAT),
        ]
        inits = [i64("one", [1, 2, 3, 4]), i64("zero_i", [0, 0, 0, 0])]
    elif kind == "slice-step-zero":
        branch = [node("Slice", ["data", "starts", "ends", "axes", "steps"], ["branch"])]
        inits = [f32("data", [[1.0, 2.0, 3.0, 4.0]]), i64("starts", [0]), i64("ends", [4]), i64("axes", [1]), i64("steps", [0])]
    elif kind == "transpose-perm":
        branch = [node("Transpose", ["data"], ["branch"], perm=[0, 5])]
        inits = [f32("data", [[1.0, 2.0, 3.0, 4.0]])]
    elif kind in ("constant-of-shape-negative", "constant-of-shape-huge"):
        shape = [-1, 4] if kind.endswith("negative") else [100_000, 100_000]
        value = helper.make_tensor("value", TensorProto.FLOAT, [1], [1.0])
        branch = [node("ConstantOfShape", ["shape"], ["branch"], value=value)]
        inits = [i64("shape", shape)]
    elif kind == "expand-huge":
        branch = [node("Expand", ["data", "shape"], ["branch"])]
        inits = [f32("data", [1.0]), i64("shape", [1, 3_000_000_000])]
    else:
        raise ValueError(kind)
    nodes = [
        node("Flatten", ["obs"], ["flat"], axis=1),
        node("ReduceSum", ["flat", "axes"], ["total"], keepdims=1),
        *branch,
        node("ReduceSum", ["branch"], ["branch_total"], keepdims=0),
        node("Add", ["total", "branch_total"], ["both"]),
        node("Mul", ["both", "zero"], ["nothing"]),
        node("Add", ["nothing", "B"], ["logits"]),
    ]
    inits += [i64("axes", [1]), f32("zero", [0.0]), f32("B", np.zeros(4))]
    graph = helper.make_graph(
        nodes,
        "policy",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["N", PLANES, h, w])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def data_dependent_rows(h, w):
    """Logits with one row per lit cell of the batch (NonZero) rather than one per observation:
    the rows' count depends on the data, a dimension no shape analysis can resolve at load."""
    nodes = [
        helper.make_node("Flatten", ["obs"], ["flat"], axis=1),
        helper.make_node("NonZero", ["flat"], ["lit"]),
        helper.make_node("Cast", ["lit"], ["lit_f"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["lit_f"], ["rows"], perm=[1, 0]),
        helper.make_node("MatMul", ["rows", "W"], ["logits"]),
    ]
    inits = [numpy_helper.from_array(np.zeros((2, 4), dtype=np.float32), "W")]
    return _model(nodes, inits, (PLANES, h, w), "float32", "N", "obs", "logits", 4)


def spatial_symbols(h, w):
    """``constant`` with the level's height and width left symbolic, as exporters write models
    meant for any size: loading fixes them from the testbed."""
    model = constant(1, h, w)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "H", "W"
    return model


def conv_greedy(target_plane, h, w, channels=32, seed=0):
    """``greedy`` plus a small contribution of a convolutional trunk (two 3x3 convolutions of
    ``channels`` channels over the planes, ReLU, a dense layer to the logits) with seeded random
    weights: a realistic inference cost (about 1.5 MFLOP per observation at 32 channels on 7x7)
    with behaviour close to the greedy seeker's."""
    rng = np.random.default_rng(seed)
    base = greedy(target_plane, h, w)
    g = base.graph
    node = helper.make_node

    def init(name, shape, scale):
        g.initializer.append(numpy_helper.from_array((scale * rng.standard_normal(shape)).astype(np.float32), name))

    init("C1", (channels, PLANES, 3, 3), 0.1)
    init("C2", (channels, channels, 3, 3), 0.05)
    init("D", (4, channels * h * w), 0.01)
    g.initializer.append(numpy_helper.from_array(np.zeros(4, dtype=np.float32), "DB"))
    # The greedy model's Gemm writes `logits`; rename it and add the trunk's output to it.
    for n in g.node:
        if n.output[0] == "logits":
            n.output[0] = "greedy_logits"
    g.node.extend(
        [
            node("Conv", ["obs", "C1"], ["c1"], pads=[1, 1, 1, 1]),
            node("Relu", ["c1"], ["r1"]),
            node("Conv", ["r1", "C2"], ["c2"], pads=[1, 1, 1, 1]),
            node("Relu", ["c2"], ["r2"]),
            node("Flatten", ["r2"], ["f2"], axis=1),
            node("Gemm", ["f2", "D", "DB"], ["trunk"], transB=1),
            node("Add", ["greedy_logits", "trunk"], ["logits"]),
        ]
    )
    onnx.checker.check_model(base)
    return base


def flops_per_observation(h, w, channels=32):
    """Multiply-adds x 2 of ``conv_greedy``'s convolutions and dense layers."""
    cells = h * w
    conv = 2 * cells * 9 * (PLANES * channels + channels * channels)
    dense = 2 * 4 * (channels * cells + PLANES * cells)
    return conv + dense
