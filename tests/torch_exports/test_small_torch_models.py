"""Dead channels injected in torch (BN weight 0, bias -1e4 before a ReLU) are removed by
`apoz=1.0` from both exporters' graphs, and the outputs do not move."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from onnxtrim.api import trim
from onnxtrim.config import TrimConfig
from tests.helpers.dead import write_npy_batches
from tests.helpers.plans import run


class SmallNet(nn.Module):
    """conv-BN-ReLU ×2 with a residual add, MaxPool, flatten, Linear-ReLU-Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv3, self.bn3 = nn.Conv2d(8, 12, 3, padding=1), nn.BatchNorm2d(12)
        self.fc1, self.fc2 = nn.Linear(12 * 4 * 4, 20), nn.Linear(20, 5)

    def forward(self, x):
        a = torch.relu(self.bn1(self.conv1(x)))
        b = torch.relu(self.bn2(self.conv2(a)) + a)
        c = nn.functional.max_pool2d(torch.relu(self.bn3(self.conv3(b))), 2)
        return self.fc2(torch.relu(self.fc1(torch.flatten(c, 1))))


def dead_net() -> SmallNet:
    torch.manual_seed(0)
    net = SmallNet().eval()
    with torch.no_grad():
        for bn in (net.bn1, net.bn2, net.bn3):
            bn.bias.fill_(1.0)  # every other channel clearly alive
        for bn in (net.bn1, net.bn2):  # residual group: dead on both branches
            bn.weight[[2, 5]] = 0.0
            bn.bias[[2, 5]] = -1e4
        net.bn3.weight[[0, 7, 11]] = 0.0
        net.bn3.bias[[0, 7, 11]] = -1e4
        net.fc1.weight[[4, 9]] = 0.0
        net.fc1.bias[:] = 10.0
        net.fc1.bias[[4, 9]] = -1e4
    return net


def export(net, path, exporter: str) -> None:
    x = torch.randn(2, 3, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            torch.onnx.export(net, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"],
                              output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
        else:
            torch.onnx.export(net, (x,), str(path), dynamo=True, verbose=False,
                              dynamic_shapes={"x": {0: torch.export.Dim("n")}})


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_injected_dead_channels_are_removed_exactly(tmp_path, exporter):
    net = dead_net()
    path = tmp_path / "net.onnx"
    export(net, path, exporter)
    x = np.random.default_rng(0).standard_normal((24, 3, 8, 8)).astype(np.float32)
    write_npy_batches(tmp_path / "calib", x, per_file=8)
    result = trim(TrimConfig(model=path, data=tmp_path / "calib", apoz=1.0, round_to=1))
    sizes = sorted((g["size"], g["kept"]) for g in result.report["groups"])
    assert sizes == [(5, 5), (8, 6), (12, 9), (20, 18)]
    onnx.checker.check_model(result.model, full_check=True)
    name = result.model.graph.input[0].name
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run(result.model, {name: x})[0], expected, rtol=1e-4, atol=1e-4)
    assert result.model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # batch stays dynamic
