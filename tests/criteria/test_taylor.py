"""Taylor (Molchanov et al. 2017) against autograd on the torch model the ONNX file was exported from."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from onnxtrim import ir, stages
from onnxtrim.calibration.readers import Batch
from onnxtrim.criteria import make_criterion
from onnxtrim.policy import Selection
from tests.helpers.plans import analysis_of


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 5, 3, padding=1)
        self.fc1 = nn.Linear(5 * 4 * 4, 12)
        self.fc2 = nn.Linear(12, 4)

    def forward(self, x: torch.Tensor, acts: list | None = None) -> torch.Tensor:
        a1 = torch.relu(self.conv1(x))
        a2 = torch.relu(self.conv2(a1))
        h = torch.relu(self.fc1(torch.flatten(nn.functional.max_pool2d(a2, 2), 1)))
        if acts is not None:
            acts.extend([a1, a2, h])
        return self.fc2(h)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    net = Net().eval()
    path = tmp_path_factory.mktemp("taylor") / "net.onnx"
    torch.onnx.export(net, (torch.zeros(2, 2, 8, 8),), str(path), dynamo=False, opset_version=17, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    import onnx

    return net, onnx.load(str(path))


def reference(net: Net, x: np.ndarray, labels: np.ndarray | None) -> list[np.ndarray]:
    """Per layer: mean over examples of |mean over positions of a * dC/da|, C the summed cross-entropy."""
    acts: list[torch.Tensor] = []
    logits = net(torch.from_numpy(x), acts)
    for a in acts:
        a.retain_grad()
    target = torch.from_numpy(labels) if labels is not None else logits.detach().argmax(dim=1)
    nn.functional.cross_entropy(logits, target, reduction="sum").backward()
    out = []
    for a in acts:
        product = (a * a.grad).detach()
        per_example = product.reshape(product.shape[0], product.shape[1], -1).mean(dim=2).abs()
        out.append(per_example.mean(dim=0).numpy().astype(np.float64))
    return out


@pytest.mark.parametrize("with_labels", [True, False])
def test_taylor_equals_autograd_on_the_source_model(exported, with_labels):
    net, model = exported
    rng = np.random.default_rng(1)
    x = rng.standard_normal((10, 2, 8, 8)).astype(np.float32)
    labels = rng.integers(0, 4, 10) if with_labels else None
    analysis = analysis_of(model)
    criterion = make_criterion("taylor")

    def batches():
        return [Batch({"x": x[i:i + 4]}, f"rows {i}", np.arange(i, min(i + 4, 10))) for i in range(0, 10, 4)]

    stats = stages.measure(model, analysis, criterion.requests(analysis), batches, labels=labels)
    scores = criterion.scores(analysis, stats)
    producers = {g.members[0]: g.id for g in analysis.groups if len(g.members) == 1}
    convs = [ir.node_label(n, i) for i, n in enumerate(analysis.graph.nodes) if n.op in ("Conv", "Gemm")]
    for label, want in zip(convs[:3], reference(net, x, labels)):
        np.testing.assert_allclose(scores.values[producers[label]], want, rtol=1e-4, atol=1e-9)


def test_taylor_plans_normalise_per_layer_by_default(exported, tmp_path):
    _, model = exported
    analysis = analysis_of(model)
    criterion = make_criterion("taylor")
    x = np.random.default_rng(2).standard_normal((6, 2, 8, 8)).astype(np.float32)
    stats = stages.measure(model, analysis, criterion.requests(analysis), lambda: [Batch({"x": x}, "all", np.arange(6))])
    plan = stages.decide(analysis, criterion, stats, Selection(fraction=0.5, global_ranking=True,
                                                               normalize=criterion.default_normalize),
                         fingerprint=stages.structure_fingerprint(model))
    assert plan.criterion == "taylor" and plan.removed == int(0.5 * (6 + 5 + 12))
