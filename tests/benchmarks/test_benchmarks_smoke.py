"""Every benchmark script runs with --quick and writes JSON with its ratio fields.

The numbers are not asserted (they depend on the machine); only that the scripts work end to end
and that the fields a reader or a dashboard relies on are there and finite. The scripts share one
temporary model cache, so resnet18 is exported once.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "benchmarks"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bench-cache")


def run_quick(script: str, cache_dir: Path, tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / f"{script}.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / f"{script}.py"), "--quick", "--json", str(out), "--cache-dir", str(cache_dir),
         *extra],
        check=False, capture_output=True, text=True, timeout=120, env=env, cwd=ROOT,
    )
    assert done.returncode == 0, f"{script} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert "command:" in done.stdout and "machine:" in done.stdout
    return json.loads(out.read_text(encoding="utf-8"))


def finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_calibration_cost(cache_dir, tmp_path):
    data = run_quick("calibration_cost", cache_dir, tmp_path, "--no-profile")
    assert data["benchmark"] == "calibration_cost" and data["machine"]["onnxruntime"]
    entry = data["models"]["resnet18"]
    for key in ("ratio_collect_over_plain_incl_session", "ratio_collect_over_plain_steady",
                "ratio_naive_over_plain_incl_session", "ratio_naive_over_plain_steady"):
        assert finite(entry[key]), key
    assert entry["naive_check"].startswith("zero counts identical")


def test_speedup(cache_dir, tmp_path):
    from onnxtrim.bench.device import cpu_channel_block

    data = run_quick("speedup", cache_dir, tmp_path)
    variants = data["models"]["resnet18"]["variants"]
    block = cpu_channel_block()  # no --round-to: the default a trim uses, this CPU's channel block
    assert set(variants) == {f"-30% auto r{block}", f"-50% auto r{block}"}
    assert all(v["round_to"] == block and v["round_to_given"] == "auto" for v in variants.values())
    for v in variants.values():
        assert 0 < v["macs_ratio"] < 1
        for batch in ("1", "8"):
            assert finite(v["latency_ratio"][batch]) and finite(v["latency_over_macs"][batch])


def test_end_to_end(cache_dir, tmp_path):
    data = run_quick("end_to_end", cache_dir, tmp_path)
    entry = data["models"]["resnet18"]
    assert finite(entry["ratio"]) and entry["samples"] == 64 and entry["calibration_samples"] == 52
    assert all(finite(r["plain_s"]) and finite(r["trim_s"]) for r in entry["rounds"])
    assert {"analyse", "calibrate", "verify"} <= set(entry["timings_s"])


def test_analysis_time(cache_dir, tmp_path):
    data = run_quick("analysis_time", cache_dir, tmp_path)
    entry = data["models"]["resnet18"]
    assert finite(entry["ratio_total_over_session"])
    assert all(finite(entry["median"][k]) for k in ("to_graph_s", "analyse_s", "apply_plan_s", "total_s"))
    assert len(data["profile"]["top_own_time"]) == 5


def test_calibration_memory(cache_dir, tmp_path):
    data = run_quick("calibration_memory", cache_dir, tmp_path)
    assert finite(data["ratio_peak_rss_max_over_min"])
    for source in ("generator", "npy"):
        rows = data["results"][source]
        assert [r["samples_seen"] for r in rows] == [32, 128]
        assert finite(data["summary"][source]["ratio_peak_rss_max_over_min"])


def test_bridge_speed(cache_dir, tmp_path):
    data = run_quick("bridge_speed", cache_dir, tmp_path)
    entry = data["models"]["resnet18"]
    assert finite(entry["ratio_bridge_torchscript_over_native"]) and finite(entry["ratio_native_train_over_native"])
    assert entry["bridge_max_rel_vs_onnxruntime"]["torchscript"] < 1e-4


def test_criteria(cache_dir, tmp_path):
    data = run_quick("criteria", cache_dir, tmp_path)
    entry = data["networks"]["mlp"]
    assert finite(entry["baseline"]["accuracy"]) and entry["baseline"]["test_samples"] == 400
    rows = entry["structured"]
    names = (*data["config"]["criteria"], data["config"]["control"])
    expected = {(c, r) for c in names for r in ("per-group", "global")}
    assert {(row["criterion"], row["ranking"]) for row in rows} == expected
    for row in rows:
        assert 0 < row["macs_kept"] <= 0.5 and finite(row["params_kept"]) and 0 <= row["accuracy"] <= 100
    default = next(r for r in entry["relief"] if r["default"])
    assert (default["alpha_conv"], default["alpha_fc"]) == (0.9, 0.95)
    assert 0 < default["connection_sparsity"] < 1
    (magnitude,) = entry["magnitude"]
    assert magnitude["sparsity"] == 0.9 and abs(magnitude["connection_sparsity"] - 0.9) < 0.01


def test_recovery(cache_dir, tmp_path):
    data = run_quick("recovery", cache_dir, tmp_path)
    entry = data["networks"]["mlp"]
    assert finite(entry["step_ms"]) and finite(entry["accuracy"])
    rounds = entry["iterative"]
    assert [r["iteration"] for r in rounds][:1] == [0] and all(finite(r["compression"]) for r in rounds)
    (budget,) = [r for r in entry["budget"] if r["criterion"] == "taylor"]
    assert 3.5 < budget["compression"] < 4.5 and 0 <= budget["accuracy"] <= 100
    (sparse,) = entry["schedule"]
    assert abs(sparse["connection_sparsity"] - 0.9) < 0.01
    (encoder,) = data["encoder"]["rows"]
    assert encoder["fraction"] == 0.4 and encoder["removed"] > 0 and 0 < encoder["cosine_after"] <= 1
    assert finite(data["encoder"]["step_ms"]) and data["verdicts"]
