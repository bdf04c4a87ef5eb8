"""The flags of `onnxtrim MODEL ...` and the TrimConfig they make (the config mirrors them one to one)."""

from __future__ import annotations

import argparse

from .. import __version__
from ..config import TrimConfig
from ..criteria import CRITERIA
from ..errors import ConfigError
from ..targets import AUTO

EPILOG = """\
examples:
  onnxtrim model.onnx --data calib/ --apoz 0.9
      remove every channel whose ReLU output is zero on at least 90% of the calibration
      data; writes model.trimmed.onnx and model.trimmed.report.json next to model.onnx
  onnxtrim model.onnx --data calib/ --labels labels.npy --check --tolerance 1e-4
      remove only never-active channels (the default, --apoz 1.0) and fail with exit code 5
      if any output moves by more than 1e-4 on the held-out samples
  onnxtrim model.onnx --data calib/ --fraction 0.3 --dry-run
      write the plan (30% of every group, highest APoZ first, kept counts rounded to the
      CPU's channel block) to model.plan.json for review; apply it with --plan model.plan.json
  onnxtrim model.onnx --data calib/ --criterion mean-activation --threshold 0
      remove exactly the channels that are zero wherever they are read, after any activation
      (GELU, SiLU, Hardswish: APoZ has a signal only after ReLU-family activations)
  onnxtrim model.onnx --criterion l1 --target-macs 0.5 --global --max-fraction-per-group 0.7
      no data needed: remove the filters of smallest L1 norm, ranked across layers, until half
      the MACs are gone, never more than 70% of one layer
  onnxtrim model.onnx --data calib/ --criterion relief --alpha-conv 0.9 --alpha-fc 0.95
      Neural Network Relief: zero the connections that carry little of each neuron's activity
      and remove the neurons left with none
  torchrun --standalone --nproc_per_node=2 -m onnxtrim model.onnx --data calib/ --fraction 0.5 --finetune
      fine-tune in two processes (DistributedDataParallel; gloo on CPU, one GPU each with
      --device cuda): each trains on its share of every batch, rank 0 writes
  onnxtrim model.onnx --data calib/ --shard 0/4 --save-stats s0.npz   (one of four parallel jobs)

other commands (each has its own --help):
  onnxtrim bench model.onnx model.trimmed.onnx --batch 1,8
      time models against each other: interleaved runs, median/p90/p99, ratios to the first
  onnxtrim stats merge s0.npz s1.npz s2.npz s3.npz -o all.npz
      add up statistics calibrated in shards (exact: the same sums as one run)

calibration data (--data):
  a directory of .npy files (one sample or a batch each, single-input models), .npz files
  keyed by input name, or the ONNX test-data layout test_data_set_*/input_*.pb; or
  reader.py:make_reader, a function returning an onnxruntime CalibrationDataReader
  (get_next() -> dict | None) or an iterable of {input name: array} dicts.

exit codes:
  0 ok, 1 internal error, 2 usage, 3 invalid or unsafe model (a static batch too large too),
  4 bad calibration data, 5 verification failed (--check), 6 cannot write output,
  7 missing dependency (onnxruntime, or the CUDA runtime --providers cuda needs),
  8 plan does not match the model, 9 a graph rewrite failed,
  10 --max-drop gate failed, 11 --min-speedup gate failed, 12 --max-latency-ms gate failed,
  13 the model cannot be run faithfully in torch (fine-tuning bridge),
  14 fine-tuning diverged (loss NaN or Inf; nothing written)
  (gates fail after the model and report are written; the report lists every gate).
  --debug adds the traceback and keeps the code; Ctrl-C and SIGTERM end the process by that signal,
  with nothing written.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="onnxtrim",
        description="Remove dead and unimportant channels (conv filters, linear neurons, MLP units) from an "
                    "ONNX model, using activation statistics measured with onnxruntime on calibration data.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="the ONNX model to trim (never modified)")
    p.add_argument("--data", metavar="DIR|FILE.py:FUNC", help="calibration data (see below)")
    what = p.add_argument_group("what to remove")
    what.add_argument("--criterion", default="apoz", choices=sorted(CRITERIA), metavar="NAME",
                      help="how channels are scored: apoz (share of zeros after the ReLU; default), "
                           "mean-activation (mean |a| where the channel is read), l1 / l2 (filter norms, no data "
                           "needed), relief (connections carrying a neuron's activity; masks weights and removes "
                           "neurons left without connections), taylor (first-order Taylor |a * dL/da| through "
                           "PyTorch: cross-entropy with --labels, else the original's predictions), magnitude (unstructured: --sparsity S of every "
                           "layer's weights set to zero)")
    choose = what.add_mutually_exclusive_group()
    choose.add_argument("--apoz", type=float, metavar="T",
                        help="shorthand for --criterion apoz --threshold T: remove channels whose Average "
                             "Percentage of Zeros is >= T (default 1.0: only channels never active on the data, "
                             "which is lossless on it)")
    choose.add_argument("--threshold", type=float, metavar="T",
                        help="remove channels past T in the criterion's own unit and direction (APoZ >= T; "
                             "mean |a|, norms, Relief's kept share <= T). Defaults: apoz 1.0, mean-activation 0 "
                             "(exactly silent channels), relief 0")
    choose.add_argument("--fraction", type=float, metavar="F",
                        help="instead, remove this share of every channel group (with --global: of all channels)")
    choose.add_argument("--target-macs", type=float, metavar="R",
                        help="remove the fewest channels that keep at most this share of the MACs (0.5 = half)")
    choose.add_argument("--target-params", type=float, metavar="R",
                        help="the same for the share of parameters kept")
    choose.add_argument("--plan", metavar="PLAN.json", help="apply a plan written earlier by --dry-run")
    what.add_argument("--global", dest="global_ranking", action="store_true",
                      help="rank channels across groups (for --fraction and the targets); combine with "
                           "--max-fraction-per-group so that no layer is emptied")
    what.add_argument("--normalize", choices=("none", "l2", "rms"),
                      help="per-group score normalisation before ranking: l2 divides by the group's L2 norm "
                           "(Molchanov et al.; it favours removing from wide layers), rms by its root mean square "
                           "(width-neutral); default: l2 for taylor, none otherwise")
    what.add_argument("--flops-reg", type=float, default=0.0, metavar="LAMBDA",
                      help="favour removing channels that cost many MACs: the case for removal grows by "
                           "LAMBDA x the channel's share of the model's MACs (Molchanov et al.)")
    what.add_argument("--max-fraction-per-group", type=float, metavar="F",
                      help="never remove more than this share of any group")
    what.add_argument("--sparsity", type=float, metavar="S",
                      help="--criterion magnitude: share of every Conv/Gemm/MatMul weight set to zero")
    what.add_argument("--alpha-conv", type=float, default=0.9, metavar="A",
                      help="--criterion relief: share of a conv neuron's activity its kept connections carry "
                           "(default 0.9)")
    what.add_argument("--alpha-fc", type=float, default=0.95, metavar="A",
                      help="--criterion relief: the same for fully connected layers (default 0.95)")
    what.add_argument("--min-keep", type=int, default=1, metavar="N", help="keep at least N channels per group")
    what.add_argument("--round-to", type=_round_to, default=AUTO, metavar="auto|N",
                      help="keep channel counts multiples of N, so that the trimmed model stays on the fastest "
                           "kernels (removes fewer). auto (default): the channel block of the target "
                           "(onnxruntime's CPU kernels work on blocks of 16 channels with AVX-512, 8 with AVX2; "
                           "CUDA: 8); --round-to 1 turns rounding off")
    what.add_argument("--target-cpu", choices=("avx2", "avx512"),
                      help="the CPU the trimmed model will run on, for --round-to auto (default: this machine's)")
    what.add_argument("--layernorm", choices=("exact", "plain"), default="exact",
                      help="a LayerNormalization over removed channels (a transformer's residual stream): exact "
                           "keeps its statistics over the original width, so removing zero channels changes no "
                           "output (default); plain normalises over the kept channels (approximate, for "
                           "fine-tuning afterwards)")
    what.add_argument("--nodes-to-exclude", default="", metavar="A,B",
                      help="comma-separated producer node names whose channel groups are left alone")
    data = p.add_argument_group("calibration")
    data.add_argument("--max-samples", type=int, metavar="N", help="use at most N samples")
    data.add_argument("--batch-size", type=int, default=32, metavar="N",
                      help="samples per onnxruntime run (a static batch dimension overrides it; default 32)")
    data.add_argument("--holdout", type=float, default=0.2, metavar="F",
                      help="share of samples kept out of calibration and used to verify (default 0.2)")
    data.add_argument("--providers", default="cpu", metavar="cpu,cuda", help="onnxruntime execution providers")
    data.add_argument("--save-stats", metavar="FILE.npz", help="save the measured statistics for later trims")
    data.add_argument("--load-stats", metavar="FILE.npz", help="reuse saved statistics instead of calibrating")
    data.add_argument("--shard", metavar="I/N",
                      help="calibrate only batches I, I+N, I+2N, ... (with --save-stats); run the N shards as "
                           "parallel jobs and add them up with 'onnxtrim stats merge'")
    tune = p.add_argument_group("recovery: fine-tuning through PyTorch (pip install the 'torch' extra)")
    tune.add_argument("--finetune", action="store_true",
                      help="after trimming, train the surviving weights towards the original model's outputs "
                           "(distillation; cross-entropy with --labels) and write them back into the trimmed ONNX")
    tune.add_argument("--train-data", metavar="DIR|FILE.py:FUNC",
                      help="training data (default: --data without its holdout, which is never trained on)")
    tune.add_argument("--train-labels", metavar="FILE.npy", help="integer labels of --train-data's samples")
    tune.add_argument("--epochs", type=int, default=1, metavar="E", help="passes over the training data (default 1)")
    tune.add_argument("--lr", type=float, default=1e-4, metavar="LR", help="Adam learning rate (default 1e-4)")
    tune.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where torch trains (default cpu)")
    tune.add_argument("--seed", type=int, default=0, metavar="S", help="seed of training (runs on CPU repeat exactly)")
    tune.add_argument("--iterations", type=int, default=1, metavar="N",
                      help="Network Trimming: trim, fine-tune, recalibrate and trim again, up to N rounds, until "
                           "nothing more crosses the threshold or a round would break --max-drop (the last good "
                           "model is kept)")
    tune.add_argument("--schedule", choices=("cubic",),
                      help="prune gradually while fine-tuning (Zhu & Gupta): the sparsity rises on a cubic from "
                           "--sparsity-initial to --sparsity-final; --criterion magnitude masks single weights, "
                           "l1/l2 masks channels and removes them at the end")
    tune.add_argument("--sparsity-final", type=float, metavar="S", help="the schedule's final sparsity")
    tune.add_argument("--sparsity-initial", type=float, default=0.0, metavar="S0", help="its initial sparsity (0)")
    tune.add_argument("--prune-every", type=int, metavar="STEPS",
                      help="steps between mask updates (default: a tenth of the pruning span)")
    tune.add_argument("--prune-start", type=int, default=0, metavar="T0", help="first pruning step (default 0)")
    tune.add_argument("--prune-end", type=int, metavar="T1",
                      help="step at which the final sparsity is reached (default: 3/4 of the training steps)")
    check = p.add_argument_group("verification")
    check.add_argument("--labels", metavar="FILE.npy", help="integer labels of the data samples, for accuracy")
    check.add_argument("--no-verify", action="store_true", help="skip comparing original and trimmed outputs")
    check.add_argument("--check", action="store_true",
                       help="fail (exit code 5) when any output differs by more than --tolerance")
    check.add_argument("--tolerance", type=float, default=1e-4, metavar="A",
                       help="absolute output difference --check accepts (default 1e-4)")
    check.add_argument("--rtol", type=float, default=0.0, metavar="R",
                       help="relative tolerance of --check, as numpy's allclose: an output element passes when "
                            "|trimmed - original| <= A + R * |original| (default 0)")
    gate = p.add_argument_group("latency and quality gates (for deployment pipelines)")
    gate.add_argument("--bench", action="store_true",
                      help="time original and trimmed models (interleaved, after warm-up) and report the speedup")
    gate.add_argument("--bench-batch", default="1", metavar="1,8", help="batch sizes to time (default 1)")
    gate.add_argument("--bench-runs", type=int, default=50, metavar="N", help="timed runs per model (default 50)")
    gate.add_argument("--bench-threads", type=int, default=1, metavar="N",
                      help="intra-op threads while timing (default 1; 0 lets onnxruntime choose)")
    gate.add_argument("--max-drop", type=float, metavar="X",
                      help="fail (exit 10) if accuracy drops by more than X (a fraction: 0.01 = one point); "
                           "without --labels, top-1 disagreement (or 1 - cosine) must stay within X")
    gate.add_argument("--min-speedup", type=float, metavar="Y",
                      help="fail (exit 11) unless original/trimmed median latency >= Y (implies --bench)")
    gate.add_argument("--max-latency-ms", type=float, metavar="Z",
                      help="fail (exit 12) if the trimmed model's median latency exceeds Z ms (implies --bench)")
    out = p.add_argument_group("output")
    out.add_argument("-o", "--output", metavar="PATH",
                     help="trimmed model (default: MODEL.trimmed.onnx); a directory (DIR/, created if its parent "
                          "exists, or an existing directory) writes MODEL.trimmed.onnx and its report into it")
    out.add_argument("--report", metavar="PATH", help="JSON report (default: OUTPUT.report.json)")
    out.add_argument("--dry-run", action="store_true", help="write the plan (JSON) instead of a model")
    out.add_argument("--plot", metavar="DIR",
                     help="also write PNG figures into DIR: channels before/after per layer, score histograms, "
                          "and fidelity against MACs kept over iterations (pip install 'onnxtrim[plot]')")
    out.add_argument("--overwrite", action="store_true", help="replace existing outputs (never the input)")
    out.add_argument("-q", "--quiet", action="store_true", help="no progress bars or table")
    out.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    p.add_argument("--version", action="version", version=f"onnxtrim {__version__}")
    return p


def config_from_args(args: argparse.Namespace) -> TrimConfig:
    excluded = tuple(n for n in args.nodes_to_exclude.split(",") if n)
    return TrimConfig(
        model=args.model, data=args.data, criterion=args.criterion, apoz=args.apoz, threshold=args.threshold,
        fraction=args.fraction, target_macs=args.target_macs, target_params=args.target_params, plan=args.plan,
        global_ranking=args.global_ranking, normalize=args.normalize, flops_reg=args.flops_reg,
        max_fraction_per_group=args.max_fraction_per_group, sparsity=args.sparsity, alpha_conv=args.alpha_conv,
        alpha_fc=args.alpha_fc, shard=_shard(args.shard), finetune=args.finetune, train_data=args.train_data,
        train_labels=args.train_labels, epochs=args.epochs, lr=args.lr, device=args.device, seed=args.seed,
        iterations=args.iterations, schedule=args.schedule, sparsity_final=args.sparsity_final,
        sparsity_initial=args.sparsity_initial, prune_every=args.prune_every, prune_start=args.prune_start,
        prune_end=args.prune_end,
        min_keep=args.min_keep, round_to=args.round_to, target_cpu=args.target_cpu, nodes_to_exclude=excluded,
        layernorm=args.layernorm,
        max_samples=args.max_samples, batch_size=args.batch_size, holdout=args.holdout,
        providers=tuple(p for p in args.providers.split(",") if p), save_stats=args.save_stats,
        load_stats=args.load_stats, labels=args.labels, verify=not args.no_verify, check=args.check,
        tolerance=args.tolerance, rtol=args.rtol, bench=args.bench, bench_batch=_ints(args.bench_batch, "--bench-batch"),
        bench_runs=args.bench_runs, bench_threads=args.bench_threads, max_drop=args.max_drop,
        min_speedup=args.min_speedup, max_latency_ms=args.max_latency_ms, output=args.output, report=args.report,
        dry_run=args.dry_run, plot=args.plot, overwrite=args.overwrite,
    )


def _round_to(text: str) -> int | str:
    if text == AUTO:
        return AUTO
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes 'auto' or a positive integer, got {text!r}") from None


def _shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError as exc:
        raise ConfigError(f"--shard takes I/N (e.g. 0/4), got {text!r}") from exc
    return index, count


def _ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part)
    except ValueError as exc:
        raise ConfigError(f"{flag} takes comma-separated integers, got {text!r}") from exc
