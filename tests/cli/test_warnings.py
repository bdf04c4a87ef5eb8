"""Issue 12, item 5: warnings where a user would want one, in the summary and the report's `warnings`.

Too few calibration samples to call a channel dead, top-1 agreement collapsing, a model written from
`--plan`/`--load-stats` without verification, and a `--check` failure whose cause is channels silent on
the calibration samples that fire on the holdout (named, with the fix).
"""

from __future__ import annotations

import json

import numpy as np
import onnx

from tests.helpers.cli import onnxtrim
from tests.helpers.dead import set_initializer
from tests.helpers.outputs_model import multi_output


def warnings_of(path) -> list[str]:
    return json.loads(path.with_name("chain.trimmed.report.json").read_text())["warnings"]


def test_too_few_calibration_samples_are_named_with_their_count(case):
    path, calib = case
    done = onnxtrim(path, "--data", calib, "--max-samples", "5", "--round-to", "1")
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stdout.split())
    assert "calibrated on 4 samples" in said
    [warning] = [w for w in warnings_of(path) if "calibration ran on only" in w]
    assert warning.startswith("calibration ran on only 4 samples and removed 5 channels: channels silent on them "
                              "may still fire on other inputs")
    assert f"warning: {warning}" in said


def test_a_collapsing_top1_agreement_is_a_warning(case):
    path, calib = case
    done = onnxtrim(path, "--data", calib, "--fraction", "0.9", "--round-to", "1")
    assert done.returncode == 0, done.stderr
    report = json.loads(path.with_name("chain.trimmed.report.json").read_text())
    agreement = report["fidelity"]["top1_agreement"]
    assert agreement < 0.9
    [warning] = [w for w in report["warnings"] if w.startswith("top-1 agreement")]
    assert f"{agreement:.1%}" in warning and "--finetune" in warning
    assert "warning: top-1 agreement with the original is only" in " ".join(done.stdout.split())


def test_a_model_written_from_a_plan_or_statistics_without_data_says_it_was_not_verified(case, tmp_path):
    path, calib = case
    assert onnxtrim(path, "--data", calib, "--dry-run", "--round-to", "1", "-q").returncode == 0
    done = onnxtrim(path, "--plan", path.with_name("chain.plan.json"))
    assert done.returncode == 0, done.stderr
    [warning] = warnings_of(path)
    assert warning == ("the trimmed model was written without verification: it was made from --plan without --data, "
                       "so there was nothing to compare it with the original on; pass --data to verify")
    assert f"warning: {warning}" in " ".join(done.stdout.split())
    assert onnxtrim(path, "--data", calib, "--save-stats", tmp_path / "s.npz", "-q", "--overwrite").returncode == 0
    stats = onnxtrim(path, "--load-stats", tmp_path / "s.npz", "--overwrite", "-q")
    assert stats.returncode == 0 and "it was made from --load-stats without --data" in warnings_of(path)[-1]


def test_check_failing_on_channels_that_fire_only_on_the_holdout_names_the_cause(tmp_path):
    """Hidden unit 5 fires only when the 16 inputs sum past 50: never on the calibration samples (standard
    normal), always on the holdout samples (every fifth, set to 5)."""
    model = multi_output(outputs=("logits",))
    set_initializer(model, "w1", lambda w: w.__setitem__(5, 1.0))
    set_initializer(model, "b1", lambda b: b.__setitem__(5, -50.0))
    path = tmp_path / "chain.onnx"
    onnx.save(model, path)
    x = np.random.default_rng(0).standard_normal((100, 16)).astype(np.float32)
    x[4::5] = 5.0
    (tmp_path / "calib").mkdir()
    np.save(tmp_path / "calib" / "x.npy", x)
    done = onnxtrim(path, "--data", tmp_path / "calib", "--check", "--round-to", "1")
    assert done.returncode == 5
    assert ("Cause: channels silent on all 80 calibration samples fired on the 20 holdout samples: calibrate on more "
            "data") in done.stderr
    assert done.stderr.count("\n") == 1
