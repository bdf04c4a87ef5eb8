"""Data-parallel fine-tuning under torchrun: the README's command with two gloo processes on CPU gives
the weights one process gives, and only rank 0 writes; how batches are shared out; torchrun's environment.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxtrim.api import trim
from onnxtrim.calibration.feeds import Batch
from onnxtrim.cli.trim_command import build_parser, config_from_args
from onnxtrim.errors import ConfigError
from onnxtrim.recovery.launch import Launch, launched

ROOT = Path(__file__).resolve().parents[2]


def readme_torchrun_command() -> list[str]:
    line = next(line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("torchrun "))
    return shlex.split(line)


def weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def test_the_readme_torchrun_command_trains_like_one_process(tmp_path):
    """Two processes (gloo) and one process, same global batches: the same weights within float summation
    order; one summary, one model and one report, written by rank 0 (a second writer would find them
    existing, without --overwrite, and fail)."""
    torch = pytest.importorskip("torch")
    if not torch.distributed.is_available():
        pytest.skip("this torch has no torch.distributed")
    command = readme_torchrun_command()
    assert command[:4] == ["torchrun", "--standalone", "--nproc_per_node=2", "-m"] and command[4] == "onnxtrim"
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(key, None)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", *command[1:]], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("onnxtrim: channel groups") == 1 and "x 2 processes" in done.stdout
    written = sorted(p.name for p in (tmp_path / "examples/digits").glob("digits.trimmed*"))
    assert written == ["digits.trimmed.onnx", "digits.trimmed.report.json"]

    args = build_parser().parse_args(command[5:])
    config = config_from_args(args)
    alone = trim(replace(config, model=ROOT / config.model, data=ROOT / config.data)).model
    together = onnx.load(tmp_path / "examples/digits/digits.trimmed.onnx")
    assert [n.op_type for n in together.graph.node] == [n.op_type for n in alone.graph.node]
    base = weights(onnx.load(ROOT / "examples/digits/digits.onnx"))
    worst = 0.0
    for name, value in weights(alone).items():
        other = weights(together)[name]
        worst = max(worst, float(np.abs(value - other).max()))
        np.testing.assert_allclose(other, value, rtol=0, atol=1e-5 * max(1.0, float(np.abs(value).max())),
                                   err_msg=name)
    moved = max(float(np.abs(v - base[k]).max()) for k, v in weights(alone).items() if k in base
                and base[k].shape == v.shape)
    assert moved > 1e-3 > worst  # training moved the weights; the two runs agree far closer than that
    print(f"largest weight difference, 2 processes vs 1: {worst:.2g}")


def _parallel(rank: int, world: int):
    torch = pytest.importorskip("torch")
    from onnxtrim.torch_bridge.distributed import DataParallel

    return DataParallel(Launch(rank, world, rank), torch.device("cpu"))


@pytest.mark.parametrize(("rows", "world"), [(32, 2), (15, 2), (7, 3), (2, 4)])
def test_each_rank_gets_a_contiguous_share_and_the_weights_make_the_global_mean(rows, world):
    batch = Batch({"x": np.arange(rows, dtype=np.float32)[:, None]}, "b", np.arange(100, 100 + rows))
    shares = [_parallel(r, world).share(batch) for r in range(world)]
    real = [part.indices for part, weight in shares if weight > 0]
    np.testing.assert_array_equal(np.concatenate(real), batch.indices)  # every row once, in order
    # DDP averages over ranks: sum_r weight_r * mean_r / W is the mean over all rows
    per_row = np.linspace(0.5, 2.0, rows)
    means = [per_row[part.indices - 100].mean() for part, _ in shares]
    averaged = sum(w * m for (_, w), m in zip(shares, means)) / world
    assert averaged == pytest.approx(per_row.mean())
    assert all(len(part.indices) >= 1 for part, _ in shares)  # a stand-in row keeps a rank in the all-reduce


def test_torchruns_environment_is_read_and_checked():
    assert launched({}) is None
    assert launched({"WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "0"}) == Launch(2, 4, 0)
    assert not Launch(2, 4, 0).writes and Launch(0, 4, 0).writes
    for env in ({"WORLD_SIZE": "2"}, {"WORLD_SIZE": "2", "RANK": "x", "LOCAL_RANK": "0"},
                {"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0"}):
        with pytest.raises(ConfigError, match=re.escape("torchrun")):
            launched(env)
