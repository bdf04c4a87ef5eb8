"""`scaled_dot_product_attention` exported by the dynamo exporter at opset 23 becomes the ONNX
`Attention` op: its heads are one class each (with the Q, K, V projections and the output
projection's rows), its head dims a class in the head-dims mode (the op's default scale, computed
from the head size, is then written out), and both trim to what zeroing them computes."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from onnxtrim import ir
from onnxtrim.analysis.groups import analyse
from tests.helpers.plans import assert_masked_equivalent, random_plan


class SDPA(nn.Module):
    """q, k, v Linear 12→12, 3 heads of 4, F.scaled_dot_product_attention, output Linear, ReLU MLP."""

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(12, 12) for _ in range(4))
        self.fc1, self.fc2 = nn.Linear(12, 16), nn.Linear(16, 3)

    def forward(self, x):
        b, t, _ = x.shape

        def heads(y):
            return y.reshape(b, t, 3, 4).transpose(1, 2)

        c = nn.functional.scaled_dot_product_attention(heads(self.q(x)), heads(self.k(x)), heads(self.v(x)))
        return self.fc2(torch.relu(self.fc1(self.o(c.transpose(1, 2).reshape(b, t, 12)))))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sdpa") / "sdpa.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(SDPA().eval(), (torch.randn(2, 5, 12),), str(path), dynamo=True, opset_version=23,
                          verbose=False)
    return onnx.load(path)


@pytest.mark.parametrize(("attention", "kinds"), [("heads", {"heads": [3]}), ("head-dims", {"head-dims": [4, 4]})])
def test_attention_op_heads_and_head_dims_are_masked_equivalent(exported, attention, kinds):
    assert [n.op_type for n in exported.graph.node].count("Attention") == 1
    analysis = analyse(ir.to_graph(exported), attention=attention)
    found = {k: sorted(g.size for g in analysis.groups if g.kind == k) for k in kinds}
    assert found == kinds and not analysis.barriers
    rng = np.random.default_rng(0)
    plan = random_plan(exported, rng, 0.5, analysis)
    x = rng.standard_normal((2, 5, 12)).astype(np.float32)  # exported with a static batch of 2
    trimmed = assert_masked_equivalent(exported, plan, {exported.graph.input[0].name: x}, analysis=analysis)
    (node,) = [n for n in trimmed.graph.node if n.op_type == "Attention"]
    scale = [a.f for a in node.attribute if a.name == "scale"]
    assert scale == ([] if attention == "heads" else [pytest.approx(0.5)])  # 1/sqrt(4), the original head size
