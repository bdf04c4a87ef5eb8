"""Issue 12, item 1: a trimmed model is never slower by default.

Kept channel counts are rounded to the target's channel block unless `--round-to 1` says otherwise
(`--round-to auto`, the default: this CPU's block, or `--target-cpu`'s; CUDA: 8), the summary and the
report say which multiple and why, and `--bench` measuring the trimmed model slower is a warning.

The convnet keeps 5 of 32 and 13 of 64 channels alive, counts off every block.
"""

from __future__ import annotations

import json

import pytest

from onnxtrim.bench.device import cpu_channel_block
from onnxtrim.config import TrimConfig
from onnxtrim.errors import ConfigError
from onnxtrim.targets import resolve
from tests.helpers.cli import onnxtrim, with_fault
from tests.helpers.convnet import write_case


@pytest.fixture()
def convnet(tmp_path):
    path, calib, labels = write_case(tmp_path, samples=64, dead=(27, 51))
    labels.rename(tmp_path / "labels.npy")  # beside the data, not in it: these runs give no --labels
    return path, calib


def kept(path) -> tuple[list[int], dict]:
    report = json.loads(path.with_name("model.trimmed.report.json").read_text())
    return [g["kept"] for g in report["groups"] if g["prunable"]], report


@pytest.mark.parametrize(("flags", "counts", "multiple"), [
    (["--target-cpu", "avx2"], [8, 16], 8),
    (["--target-cpu", "avx512"], [16, 16], 16),
    (["--round-to", "1"], [5, 13], 1),
    (["--round-to", "4"], [8, 16], 4),
])
def test_round_to_auto_is_the_default_and_follows_the_target(convnet, flags, counts, multiple):
    path, calib = convnet
    done = onnxtrim(path, "--data", calib, *flags)
    assert done.returncode == 0, done.stderr
    got, report = kept(path)
    assert got == counts
    rounding = report["criterion"]["rounding"]
    assert rounding["multiple"] == multiple and report["criterion"]["selection"]["round_to"] == multiple
    said = " ".join(done.stdout.split())
    if multiple == 1:
        assert rounding["auto"] is False and "rounded up to multiples" not in said and "hint:" in said
    else:
        assert f"kept channel counts rounded up to multiples of {multiple}" in said
        assert "--round-to 1 turns rounding off" in said
    if flags[0] == "--target-cpu":
        assert rounding["auto"] and f"the CPU channel block of {flags[1].upper()} (--target-cpu)" in said


def test_gpu_providers_round_to_eight_and_several_targets_to_their_common_multiple():
    assert resolve("auto", ("cuda",)).multiple == 8 and "CUDA" in resolve("auto", ("cuda",)).reason
    assert resolve("auto", ("cuda", "cpu"), "avx512").multiple == 16
    assert resolve("auto", ("cpu",), "avx2").multiple == 8
    assert resolve(1, ("cpu",)).multiple == 1 and not resolve(1, ("cpu",)).auto


def test_without_flags_the_multiple_is_this_machines_block(convnet):
    path, calib = convnet
    done = onnxtrim(path, "--data", calib)
    assert done.returncode == 0, done.stderr
    block = cpu_channel_block()
    got, report = kept(path)
    assert all(count % block == 0 for count in got)
    assert report["criterion"]["rounding"] == {"multiple": block, "auto": True, "reason": resolve("auto", ("cpu",)).reason}
    assert "on this machine" in " ".join(done.stdout.split())


def test_bad_round_to_and_target_cpu_are_usage_errors(convnet):
    path, calib = convnet
    assert onnxtrim(path, "--data", calib, "--round-to", "fast").returncode == 2
    assert onnxtrim(path, "--data", calib, "--round-to", "0").returncode == 2
    assert onnxtrim(path, "--data", calib, "--target-cpu", "sse").returncode == 2
    with pytest.raises(ConfigError):
        TrimConfig(model=path, data=calib, round_to=True)


def test_bench_warns_when_the_trimmed_model_is_slower(convnet):
    """The trimmed model's runs are made 5 ms slower (an injected delay): a warning, exit 0."""
    path, calib = convnet
    done = with_fault(["slow", "2", "0.005"], path, "--data", calib, "--bench", "--bench-batch", "1,2",
                      "--bench-runs", "5")
    assert done.returncode == 0, done.stderr
    report = json.loads(path.with_name("model.trimmed.report.json").read_text())
    [warning] = [w for w in report["warnings"] if "slower than the original" in w]
    assert "batch 1" in warning and "batch 2" in warning and "--min-speedup makes this a failure" in warning
    assert "warning: the trimmed model is slower than the original at batch 1" in " ".join(done.stdout.split())
    fast = onnxtrim(path, "--data", calib, "--bench", "--bench-runs", "5", "--overwrite", "--min-speedup", "1.01")
    assert fast.returncode == 0, fast.stderr  # 4x fewer MACs: faster without the delay
    assert not [w for w in json.loads(path.with_name("model.trimmed.report.json").read_text())["warnings"]
                if "slower" in w]
