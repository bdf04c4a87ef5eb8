"""Criteria on trained networks: test accuracy against MACs kept, for every criterion, no fine-tuning.

For each trained network (`_trained.py`: the shipped digits CNN, a VGG-style CNN and an MLP, all
on scikit-learn's digits with a fixed train / calibration / test split), the public stages run
as a user's trim does: `stages.analyse`, `stages.measure` on the calibration split (once per
network, every statistic the criteria below read), `stages.decide`, `stages.rewrite`. Each
trimmed model is then run with onnxruntime on the test split, which neither training nor
calibration saw; nothing is fine-tuned. Accuracies are compared with the original's, measured
in the same run on the same test images.

Structured criteria (`apoz`, `mean-activation`, `l1`, `l2`, and `relief` for its structured part:
its channel scores, the share of a neuron's outgoing connections its masks keep, without the
masks) each meet MACs budgets (`Selection(target_macs=R)`, R = MACs kept / original) in two ways:
  per-group  every group loses the same share of its channels, the criterion choosing which;
  global     channels ranked across groups after per-group L2 normalisation of the scores
             (Molchanov et al. 2017), at most `--max-fraction-per-group` of any group removed.
The control is a random ranking (seeded uniform scores, the mean over five seeds), what a
criterion has to beat. Budgets default to 90 / 70 / 50 / 30 % of the MACs. Reported: MACs and
parameters kept (`onnxtrim.metrics.cost` of the trimmed model), channels removed, test accuracy
and its change. With 400 test images one image is 0.25 points; at 98% the binomial standard
error is about 0.7 points, so differences of a point or two are within noise.

Unstructured operating points: Relief at its default alphas (0.9 conv / 0.95 fully connected)
and a sweep of one alpha for both, applied as a user's `--criterion relief` is (masks, and the
neurons left without connections removed, at the default threshold 0); magnitude at a few
sparsities as the reference. Connection sparsity is the share of the masked weights (the
plans' masks of Conv/Gemm weights, biases not counted) set to zero; "nonzero weights" is the
trimmed model's nonzero Conv/Gemm weights over the original's weights, which also counts the
weights that went with removed neurons. The summary names the highest connection sparsity at
no more than 1 point of accuracy lost.
"""

from __future__ import annotations

import sys
import time
from argparse import Namespace
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

# this folder (for _common, _trained) and the repository root (for the onnxtrim of this checkout)
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import _common
import _trained
import numpy as np
import onnx
from onnx import numpy_helper

from onnxtrim import metrics, runtime, stages
from onnxtrim.analysis.groups import Analysis
from onnxtrim.calibration.feeds import Batch
from onnxtrim.calibration.stats import ChannelStats
from onnxtrim.criteria import make_criterion
from onnxtrim.criteria.base import Criterion, Scores
from onnxtrim.criteria.magnitude import Magnitude
from onnxtrim.criteria.relief import Relief
from onnxtrim.masks import WeightMask
from onnxtrim.plan import PrunePlan, structure_fingerprint
from onnxtrim.policy import Selection

# The structured criteria compared at equal MACs (Taylor's gradients come through the torch bridge).
STRUCTURED = ("apoz", "mean-activation", "l1", "l2", "relief", "taylor")
CONTROL = "random"  # channels chosen at random: what a criterion must beat
RANDOM_SEEDS = range(5)
RANKINGS = ("per-group", "global")
DEFAULT_ALPHAS = (0.9, 0.95)  # Relief's (conv, fully connected), the paper's defaults
LOSS_POINTS = 1.0  # "at no more than 1 point of accuracy lost"
CALIB_BATCH = 50


# ----------------------------------------------------------------------------------------------------
# Measuring one model


def accuracy(model: onnx.ModelProto, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy in percent, with onnxruntime on the CPU."""
    session = runtime.make_session(model)
    (logits,) = runtime.run(session, None, {model.graph.input[0].name: x})
    return 100.0 * float(np.mean(np.argmax(logits, axis=1) == y))


def batches(model: onnx.ModelProto, x: np.ndarray) -> Iterator[Batch]:
    name = model.graph.input[0].name
    for start in range(0, len(x), CALIB_BATCH):
        rows = np.arange(start, min(start + CALIB_BATCH, len(x)), dtype=np.int64)
        yield Batch({name: x[rows]}, f"calibration {start}", rows)


def weight_count(model: onnx.ModelProto, nonzero: bool) -> int:
    """Entries (or nonzero entries) of every Conv/Gemm/MatMul weight that is an initializer."""
    inits = {t.name: t for t in model.graph.initializer}
    total = 0
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul") and len(node.input) > 1 and node.input[1] in inits:
            w = numpy_helper.to_array(inits[node.input[1]])
            total += int(np.count_nonzero(w)) if nonzero else int(w.size)
    return total


def connection_sparsity(masks: Sequence[WeightMask]) -> float:
    """Share of the masked weights (input 1 of their node: not biases) that the masks set to zero."""
    weights = [m for m in masks if m.input_index == 1]
    return sum(m.zeros for m in weights) / max(sum(m.keep.size for m in weights), 1)


class Trial:
    """One network's original, analysis and statistics, and how a plan's model compares with them."""

    def __init__(self, net: _trained.Network) -> None:
        self.net, self.model = net, net.model
        self.analysis: Analysis = stages.analyse(net.model)
        self.fingerprint = structure_fingerprint(net.model)
        self.cost = metrics.cost(net.model)
        self.weights = weight_count(net.model, nonzero=False)
        self.accuracy = accuracy(net.model, net.data.x_test, net.data.y_test)
        criteria = [make_criterion(name) for name in STRUCTURED]
        requests = [r for c in criteria for r in c.requests(self.analysis)]
        started = time.perf_counter()
        # Taylor's gradients use the calibration labels (cross-entropy), the second pass over the same batches.
        self.stats: ChannelStats = stages.measure(
            net.model, self.analysis, list(dict.fromkeys(requests)), lambda: batches(net.model, net.data.x_calib),
            fingerprint=self.fingerprint, labels=net.data.y_calib)
        self.calibration_s = time.perf_counter() - started

    def baseline(self) -> dict[str, Any]:
        data = self.net.data
        return {"source": self.net.source, "accuracy": self.accuracy, "params": self.cost.params,
                "macs": self.cost.macs, "weights": self.weights, "calibration_s": self.calibration_s,
                "calibration_samples": len(data.x_calib), "test_samples": len(data.x_test),
                "train_samples": len(data.x_train), "input_shape": list(data.x_test.shape[1:])}

    def outcome(self, criterion: Criterion, scores: Scores, selection: Selection) -> dict[str, Any]:
        """Decide, rewrite, and measure the trimmed model against the original."""
        plan: PrunePlan = stages.decide(self.analysis, criterion, scores, selection,
                                        fingerprint=self.fingerprint)
        trimmed = stages.rewrite(self.model, plan, self.analysis)
        cost = metrics.cost(trimmed)
        acc = accuracy(trimmed, self.net.data.x_test, self.net.data.y_test)
        return {"macs_kept": cost.macs / self.cost.macs, "params_kept": cost.params / self.cost.params,
                "channels_removed": plan.removed, "accuracy": acc, "change": acc - self.accuracy,
                "connection_sparsity": connection_sparsity(plan.masks),
                "nonzero_weights_kept": weight_count(trimmed, nonzero=True) / self.weights,
                "notes": list(plan.notes)}


# ----------------------------------------------------------------------------------------------------
# The three measurements


def channel_scores(criterion: Criterion, trial: Trial) -> Scores:
    """A criterion's channel scores only: Relief's masks are its unstructured part, measured apart."""
    scores = criterion.scores(trial.analysis, trial.stats)
    return Scores(scores.values, scores.no_signal)


def selection(budget: float, ranking: str, args: Namespace) -> Selection:
    if ranking == "global":
        return Selection(target_macs=budget, global_ranking=True, normalize=args.normalize,
                         max_fraction_per_group=args.max_fraction_per_group)
    return Selection(target_macs=budget)


class RandomOrder(Criterion):
    """The control a criterion must beat: channels ranked by seeded uniform random scores."""

    name = "random"
    unit = "random score"
    needs_data = False

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def scores(self, analysis: Analysis, stats: ChannelStats) -> Scores:
        rng = np.random.default_rng(self.seed)
        return Scores({g.id: rng.random(g.size) for g in analysis.groups})


def contenders() -> list[tuple[str, list[Criterion]]]:
    """Every structured criterion once, and the random control over RANDOM_SEEDS (its rows average them)."""
    return [(name, [make_criterion(name)]) for name in STRUCTURED] + \
        [(CONTROL, [RandomOrder(seed) for seed in RANDOM_SEEDS])]


def structured(trial: Trial, args: Namespace) -> list[dict]:
    """Every contender at every budget, with every ranking of `args`."""
    rows = []
    for name, criteria in contenders():
        scores = [channel_scores(criterion, trial) for criterion in criteria]
        for ranking in args.rankings:
            for budget in args.budgets:
                chosen = selection(budget, ranking, args)
                outcomes = [trial.outcome(c, s, chosen) for c, s in zip(criteria, scores)]
                rows.append({"criterion": name, "ranking": ranking, "target_macs": budget,
                             **mean_of(outcomes)})
    return rows


def mean_of(outcomes: list[dict]) -> dict:
    """One outcome as it is; several (the random control's seeds) as their means, accuracies listed."""
    if len(outcomes) == 1:
        return outcomes[0]
    numbers = [k for k, v in outcomes[0].items() if isinstance(v, (int, float))]
    return {**{k: float(np.mean([o[k] for o in outcomes])) for k in numbers},
            "accuracies": [o["accuracy"] for o in outcomes],
            "notes": sorted({n for o in outcomes for n in o["notes"]})}


def relief_points(trial: Trial, alphas: Sequence[float]) -> list[dict]:
    """Relief as `--criterion relief` applies it: masks, and neurons left without connections removed."""
    pairs = [DEFAULT_ALPHAS] + [(a, a) for a in alphas if (a, a) != DEFAULT_ALPHAS]
    rows = []
    for alpha_conv, alpha_fc in pairs:
        criterion = Relief(alpha_conv, alpha_fc)
        scores = criterion.scores(trial.analysis, trial.stats)
        row = trial.outcome(criterion, scores, Selection(threshold=criterion.default_threshold))
        rows.append({"alpha_conv": alpha_conv, "alpha_fc": alpha_fc,
                     "default": (alpha_conv, alpha_fc) == DEFAULT_ALPHAS, **row})
    return rows


def magnitude_points(trial: Trial, sparsities: Sequence[float]) -> list[dict]:
    rows = []
    for sparsity in sparsities:
        criterion = Magnitude(sparsity)
        scores = criterion.scores(trial.analysis, trial.stats)
        rows.append({"sparsity": sparsity,
                     **trial.outcome(criterion, scores, Selection(threshold=criterion.default_threshold))})
    return rows


def sparsest_within_loss(rows: Sequence[dict]) -> dict | None:
    """The row with the highest connection sparsity that loses at most LOSS_POINTS of accuracy."""
    fine = [r for r in rows if r["change"] >= -LOSS_POINTS - 1e-9]
    return max(fine, key=lambda r: r["connection_sparsity"]) if fine else None


# ----------------------------------------------------------------------------------------------------
# Tables


def pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def signed(value: float) -> str:
    return f"{value:+.2f}"


def print_network(name: str, entry: dict) -> None:
    base = entry["baseline"]
    print(f"### {name}: {base['source']}")
    print(f"input {base['input_shape']}, params {base['params']:,}, MACs/sample {base['macs']:,}; "
          f"original test accuracy {base['accuracy']:.2f}% ({base['test_samples']} test images; "
          f"calibrated on {base['calibration_samples']} in {base['calibration_s']:.2f} s)")
    print()
    print(_common.table(
        ["criterion", "ranking", "target MACs", "MACs kept", "params kept", "removed", "test acc %",
         "change"],
        [[r["criterion"], r["ranking"], pct(r["target_macs"]), pct(r["macs_kept"]), pct(r["params_kept"]),
          f"{r['channels_removed']:g}", f"{r['accuracy']:.2f}", signed(r["change"])]
         for r in entry["structured"]]))
    notes = sorted({n for r in entry["structured"] for n in r["notes"]})
    for note in notes:
        print(f"note: {note}")
    print()
    print(_common.table(
        ["relief alpha conv/fc", "connection sparsity", "nonzero weights", "removed", "MACs kept",
         "test acc %", "change"],
        [[f"{r['alpha_conv']:g}/{r['alpha_fc']:g}" + (" (default)" if r["default"] else ""),
          pct(r["connection_sparsity"]), pct(r["nonzero_weights_kept"]), r["channels_removed"],
          pct(r["macs_kept"]), f"{r['accuracy']:.2f}", signed(r["change"])] for r in entry["relief"]]))
    print()
    print(_common.table(
        ["magnitude sparsity", "connection sparsity", "nonzero weights", "test acc %", "change"],
        [[f"{r['sparsity']:g}", pct(r["connection_sparsity"]), pct(r["nonzero_weights_kept"]),
          f"{r['accuracy']:.2f}", signed(r["change"])] for r in entry["magnitude"]]))
    print()


def print_summary(results: dict[str, dict], budgets: Sequence[float], rankings: Sequence[str]) -> None:
    """Accuracy change at each MACs budget, per network and criterion: the README table."""
    print("summary: test accuracy change (points) at MACs kept, no fine-tuning; "
          + " / ".join(rankings) + " in each cell")
    headers = ["network (original acc)", "criterion", *[f"{pct(b)} MACs" for b in budgets]]
    rows = []
    for name, entry in results.items():
        for criterion in (*STRUCTURED, CONTROL):
            cells = []
            for budget in budgets:
                found = {r["ranking"]: r for r in entry["structured"]
                         if r["criterion"] == criterion and r["target_macs"] == budget}
                cells.append(" / ".join(signed(found[k]["change"]) for k in rankings))
            label = f"{CONTROL} (mean of {len(RANDOM_SEEDS)})" if criterion == CONTROL else criterion
            rows.append([f"{name} ({entry['baseline']['accuracy']:.2f}%)", label, *cells])
    print(_common.table(headers, rows))


def print_sparsest(results: dict[str, dict]) -> None:
    """Relief's and magnitude's sparsest operating point within the allowed loss, per network."""
    print(f"highest connection sparsity at <= {LOSS_POINTS:g} point lost")
    rows = [[name, label, *sparsest_cells(label, entry[f"{label}_best"])]
            for name, entry in results.items() for label in ("relief", "magnitude")]
    headers = ["network", "criterion", "setting", "connection sparsity", "nonzero weights", "change"]
    print(_common.table(headers, rows))


def sparsest_cells(label: str, best: dict | None) -> list[str]:
    if best is None:
        return ["-"] * 4
    setting = f"alpha {best['alpha_conv']:g}/{best['alpha_fc']:g}" if label == "relief" \
        else f"sparsity {best['sparsity']:g}"
    return [setting, pct(best["connection_sparsity"]), pct(best["nonzero_weights_kept"]),
            signed(best["change"])]


# ----------------------------------------------------------------------------------------------------


def parse_args() -> Namespace:
    """The command line, with --quick's defaults filled in and lists parsed."""
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--networks", default=None,
                   help=f"any of {','.join(_trained.NETWORKS)} (default all; mlp with --quick)")
    p.add_argument("--budgets", default=None,
                   help="MACs kept, shares of the original (default 0.9,0.7,0.5,0.3; 0.5 with --quick)")
    p.add_argument("--rankings", default=",".join(RANKINGS), help="per-group and/or global (default both)")
    p.add_argument("--max-fraction-per-group", type=float, default=0.9,
                   help="with the global ranking: at most this share of any group removed (default 0.9)")
    p.add_argument("--normalize", choices=("l2", "rms", "none"), default="l2",
                   help="with the global ranking: per-group normalisation of the scores (default l2)")
    p.add_argument("--alphas", default=None,
                   help="Relief's alpha sweep, one alpha for conv and fc (default "
                        "0.5,0.7,0.8,0.85,0.9,0.95,0.98,0.99; 0.8 with --quick)")
    p.add_argument("--sparsities", default=None,
                   help="magnitude's sparsities (default 0.3,0.4,0.5,0.6,0.7,0.8,0.9; 0.9 with --quick)")
    p.add_argument("--epochs", type=int, default=None,
                   help="override the training recipes' epochs (3 with --quick)")
    args = p.parse_args()
    args.networks = _common.csv(args.networks or ("mlp" if args.quick else ",".join(_trained.NETWORKS)))
    args.budgets = floats(args.budgets or ("0.5" if args.quick else "0.9,0.7,0.5,0.3"))
    args.rankings = _common.csv(args.rankings)
    args.alphas = floats(args.alphas or ("0.8" if args.quick else "0.5,0.7,0.8,0.85,0.9,0.95,0.98,0.99"))
    args.sparsities = floats(args.sparsities or ("0.9" if args.quick else "0.3,0.4,0.5,0.6,0.7,0.8,0.9"))
    args.epochs = args.epochs or (3 if args.quick else None)
    unknown = sorted(set(args.networks) - set(_trained.NETWORKS)) + sorted(set(args.rankings) - set(RANKINGS))
    if unknown:
        p.error(f"unknown network or ranking: {', '.join(unknown)}")
    return args


def floats(text: str) -> list[float]:
    return [float(v) for v in _common.csv(text)]


def run_network(name: str, args: Namespace) -> dict[str, Any]:
    """Everything measured on one network, with how long training (or loading) and the rest took."""
    clock = time.perf_counter()
    trial = Trial(_trained.network(name, args.cache_dir, args.epochs))
    prepared = time.perf_counter() - clock
    entry = {"baseline": trial.baseline(), "structured": structured(trial, args),
             "relief": relief_points(trial, args.alphas),
             "magnitude": magnitude_points(trial, args.sparsities)}
    entry["relief_best"] = sparsest_within_loss(entry["relief"])
    entry["magnitude_best"] = sparsest_within_loss(entry["magnitude"])
    entry["prepare_s"], entry["total_s"] = prepared, time.perf_counter() - clock
    return entry


def main() -> int:
    args = parse_args()
    info = _common.machine()
    _common.print_header("criteria: test accuracy against MACs kept, trained networks, no fine-tuning", info)
    started = time.perf_counter()
    results: dict[str, dict] = {}
    for name in args.networks:
        results[name] = run_network(name, args)
        print_network(name, results[name])
    _common.finish(info)
    print_summary(results, args.budgets, args.rankings)
    print()
    print_sparsest(results)
    print(f"\nwall time {time.perf_counter() - started:.0f} s (training or loading: "
          + ", ".join(f"{n} {e['prepare_s']:.0f} s" for n, e in results.items())
          + f"); load average {info['loadavg_1m_at_start']} -> {info['loadavg_1m_at_end']}")
    config = {key: getattr(args, key) for key in ("networks", "budgets", "rankings", "max_fraction_per_group",
                                                  "normalize", "alphas", "sparsities", "epochs")}
    _common.write_json(args.json, {
        "benchmark": "criteria", "machine": info,
        "config": {**config, "criteria": list(STRUCTURED), "control": CONTROL,
                   "random_seeds": list(RANDOM_SEEDS), "default_alphas": list(DEFAULT_ALPHAS),
                   "loss_points": LOSS_POINTS},
        "networks": results,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
