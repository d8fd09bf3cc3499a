"""Export a PyTorch policy to ONNX and audit it (needs `pip install torch onnx`; the test suite
does not run this file).

    .venv/bin/python examples/python/export_torch_to_onnx.py

The contract (docs/onnx.md): one input named "obs", float32 one-hot planes [N, C, H, W] (C = 20,
in the order `mesascope envs` prints) or uint8 [N, H, W, 3]; one output named "logits",
float32 [N, A]; the batch dimension dynamic. Train the network any way you like (here it is
left untrained, so expect a capability failure); the audit does not care how it was made.
"""

import torch

import mesascope

testbed = "exit-vs-green"
d = mesascope.describe(testbed)
C, H, W, A = len(d["plane_names"]), d["height"], d["width"], d["n_actions"]

policy = torch.nn.Sequential(
    torch.nn.Conv2d(C, 16, 3, padding=1),
    torch.nn.ReLU(),
    torch.nn.Flatten(),
    torch.nn.Linear(16 * H * W, 64),
    torch.nn.ReLU(),
    torch.nn.Linear(64, A),
)

torch.onnx.export(
    policy,
    torch.zeros(1, C, H, W),
    "policy.onnx",
    input_names=["obs"],
    output_names=["logits"],
    dynamic_axes={"obs": {0: "N"}, "logits": {0: "N"}},
)

# From Python ...
model = mesascope.load_onnx("policy.onnx", testbed)  # checks names, shapes, element types
envs = mesascope.make_vec(testbed, 1024, obs="planes")
obs, _ = envs.reset()
print("logits of a batch:", model(obs).shape)
report = mesascope.audit("policy.onnx", testbed, episodes=100, out="reports/torch-policy")
print(report.label, "-> exit code", report.exit_code)

# ... or from the command line, gating a pipeline on the exit code:
#   mesascope audit policy.onnx --env exit-vs-green --out reports/torch-policy
