"""TensorFlow-style "same" padding, as timm's `tf_` models compute it (`pad_same`: pads from the input's
size at run time), exported by the TorchScript exporter: the pads are a Shape → Gather → arithmetic →
Concat chain, which folding turns into constants because the spatial sizes are static. Without
folding, every Pad after the first would be a barrier ("non-constant pads")."""

from __future__ import annotations

import math
import warnings

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from onnxtrim import ir
from onnxtrim.analysis.groups import analyse
from tests.helpers.plans import assert_masked_equivalent, random_plan


def pad_same(x, kernel: int, stride: int):
    """timm's get_same_padding + F.pad, written as timm writes it (sizes read from the tensor)."""
    ih, iw = x.size()[-2:]
    pad_h = max((math.ceil(ih / stride) - 1) * stride + kernel - ih, 0)
    pad_w = max((math.ceil(iw / stride) - 1) * stride + kernel - iw, 0)
    return F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])


class Conv2dSame(nn.Conv2d):
    def forward(self, x):
        return F.conv2d(pad_same(x, self.kernel_size[0], self.stride[0]), self.weight, self.bias, self.stride, 0,
                        self.dilation, self.groups)


class SameNet(nn.Module):
    """conv 3→8 /2, depthwise 8 /2, conv 8→16 /2, each TF-same padded, mean pool, Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.a = Conv2dSame(3, 8, 3, stride=2)
        self.b = Conv2dSame(8, 8, 3, stride=2, groups=8)
        self.c = Conv2dSame(8, 16, 3, stride=2)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = F.relu(self.c(F.relu(self.b(F.relu(self.a(x))))))
        return self.fc(x.mean((2, 3)))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("same") / "same.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(SameNet().eval(), (torch.randn(2, 3, 15, 15),), str(path), dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    return onnx.load(path)


def test_pads_computed_from_shape_fold_to_constants(exported):
    pads_inputs = [n.input[1] for n in exported.graph.node if n.op_type == "Pad"]
    produced = {out: n.op_type for n in exported.graph.node for out in n.output}
    assert len(pads_inputs) == 3 and all(produced.get(name) not in (None, "Constant") for name in pads_inputs)
    unfolded = analyse(ir.to_graph(exported, fold_shapes=False))
    assert {b.reason for b in unfolded.barriers} == {"Pad node '/b/Pad' has non-constant pads",
                                                    "Pad node '/c/Pad' has non-constant pads"}
    folded = analyse(ir.to_graph(exported))
    assert not folded.barriers
    assert sorted((g.members, len(g.prunable)) for g in folded.groups) == [
        (("/a/Conv",), 8), (("/c/Conv",), 16), (("/fc/Gemm",), 0)]  # /b is depthwise: coupled with /a
    pads = [ir.const_value(n.inputs[1]) for n in folded.graph.nodes if n.op == "Pad"]
    assert all(p is not None for p in pads)


@pytest.mark.parametrize("seed", [0, 1])
def test_trimming_through_tf_same_padding_is_masked_equivalent(exported, seed):
    rng = np.random.default_rng(seed)
    plan = random_plan(exported, rng, 0.5)
    x = rng.standard_normal((3, 3, 15, 15)).astype(np.float32)
    assert_masked_equivalent(exported, plan, {"x": x})
