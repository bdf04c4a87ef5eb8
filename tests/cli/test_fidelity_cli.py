"""Issue 12, items 3 and 4: figures a user can trust, through the command line.

A dry run shows the cost its plan projects (not 100%); differences are printed with significant
digits beside a relative error; `--check` takes numpy's allclose `--rtol`; every output is compared
in the terms of its kind, and the report names the kind and why.
"""

from __future__ import annotations

import json
import re

from tests.helpers.cli import onnxtrim
from tests.helpers.outputs_model import multi_output, write


def report(path):
    return json.loads(path.with_name(path.name.removesuffix(".onnx") + ".trimmed.report.json").read_text())


def test_dry_run_summary_shows_the_projected_cost(case):
    path, calib = case
    done = onnxtrim(path, "--data", calib, "--fraction", "0.5", "--round-to", "1", "--dry-run")
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stdout.split())
    macs = re.search(r"MACs/sample [\d,]+ → [\d,]+ \(([\d.]+)%\)", said)
    assert macs and float(macs.group(1)) < 100.0, said
    assert "(projected from the plan; no model written)" in said and "channels removed 12" in said
    written = json.loads(path.with_name("chain.plan.report.json").read_text())
    assert written["cost"]["projected"] is True and written["cost"]["macs_ratio"] < 1.0


def test_tiny_outputs_show_significant_digits_and_a_relative_error(tmp_path):
    path, calib = write(tmp_path, multi_output(scale=1e-6, outputs=("value",)))
    done = onnxtrim(path, "--data", calib, "--fraction", "0.5", "--round-to", "1")
    assert done.returncode == 0, done.stderr
    fidelity = report(path)["fidelity"]
    assert 0 < fidelity["max_abs_diff"] < 1e-5 and fidelity["max_rel_diff"] > 1e-3  # not rounded to 0
    said = " ".join(done.stdout.split())
    line = re.search(r"output 'value' \(regression\): max \|Δ\| (\S+) \(relative (\S+)\)", said)
    assert line and float(line.group(1)) == float(f"{fidelity['max_abs_diff']:.3g}") and "e-0" in line.group(1)
    assert float(line.group(2)) > 1e-3


def test_check_takes_a_relative_tolerance(case):
    path, calib = case
    loose = onnxtrim(path, "--data", calib, "--fraction", "0.5", "--round-to", "1", "--check", "--tolerance", "0",
                     "--rtol", "1e6")
    assert loose.returncode == 0, loose.stderr
    assert report(path)["fidelity"]["tolerance"] == {"atol": 0.0, "rtol": 1e6, "outside": 0}
    tight = onnxtrim(path, "--data", calib, "--fraction", "0.5", "--round-to", "1", "--check", "--tolerance", "0",
                     "--rtol", "1e-9", "--overwrite")
    assert tight.returncode == 5
    assert "above --tolerance 0 + --rtol 1e-09 x |original|" in tight.stderr and "(relative " in tight.stderr
    assert report(path)["fidelity"]["tolerance"]["outside"] > 0


def test_each_output_is_measured_in_the_terms_of_its_kind(tmp_path):
    path, calib = write(tmp_path, multi_output())
    done = onnxtrim(path, "--data", calib, "--fraction", "0.25", "--round-to", "1")
    assert done.returncode == 0, done.stderr
    fidelity = report(path)["fidelity"]
    kinds = {o["name"]: (o["kind"], o["metric"]) for o in fidelity["outputs"]}
    assert kinds == {"logits": ("class_scores", "top-1 agreement"), "label": ("integer", "exact match"),
                     "emb": ("embedding", "cosine"), "value": ("regression", "relative error")}
    by_name = {o["name"]: o for o in fidelity["outputs"]}
    assert by_name["emb"]["kind_because"] == "produced by LayerNormalization"
    assert by_name["emb"]["top1_agreement"] is None and by_name["label"]["exact_match"] is not None
    assert fidelity["primary"] == "logits" and fidelity["top1_agreement"] == by_name["logits"]["top1_agreement"]
    said = " ".join(done.stdout.split())
    assert "output 'logits' (class scores): top-1 agreement" in said
    assert "output 'emb' (embedding): cosine" in said and "output 'label' (integer): exact match" in said


def test_an_embedding_model_reports_cosine_not_top1_and_gates_on_it(tmp_path):
    path, calib = write(tmp_path, multi_output(outputs=("emb",)))
    done = onnxtrim(path, "--data", calib, "--fraction", "0.5", "--round-to", "1", "--max-drop", "0")
    assert done.returncode == 10, done.stderr
    assert "1 - cosine similarity is" in done.stderr
    fidelity = report(path)["fidelity"]
    assert fidelity["top1_agreement"] is None and fidelity["mean_cosine"] < 1.0
    assert "top-1" not in done.stdout
