"""Data-parallel fine-tuning with torch's own machinery: torchrun, a process group, DDP.

    torchrun --standalone --nproc_per_node=2 -m onnxtrim model.onnx --data calib/ --fraction 0.5 --finetune

Why the design is this simple:

- Every rank runs the whole onnxtrim pipeline as one process would: it loads the model, calibrates,
  plans, verifies on the holdout. Those stages are deterministic (statistics are exact sums; same
  data, same model, same options), so every rank reaches the same plan and the same decisions (an
  iteration undone by max_drop, a schedule's masks, which are computed from weights DDP keeps equal)
  without exchanging anything. Broadcasting rank 0's results instead would save W−1 calibrations
  but needs a protocol for every decision, and a rank acting on a decision another did not take
  deadlocks the next all-reduce. Only training is shared out; only rank 0 writes (`Launch.writes`).
- Every rank reads every global training batch, in the same order (the shuffle is seeded), and
  takes its share of the rows: rank r the r-th of W contiguous, nearly equal slices. A step is one
  global batch everywhere, so step counts, schedules and the learning rate per step are those of a
  single process; the teacher's outputs are computed (and cached) only for a rank's own rows.
- DDP averages gradients over ranks, and each rank's loss is scaled by n_r·W/N, so the average is
  the gradient of the mean loss over the N rows of the global batch: the gradient one process
  computes on the whole batch (every onnxtrim loss is a mean of per-sample terms, and the bridged
  module runs in inference semantics, BatchNormalization with its stored statistics, so rows do not
  interact). A rank left without rows (N < W) runs one row with weight 0: every rank must take part
  in every all-reduce. One process and W processes then differ only by the order in which floats
  are summed: on the digits example 1.2e-7 after 30 steps with 2 processes, 8e-7 after 16 with 3
  (tests/recovery/test_distributed.py checks the first). Where the gradients are themselves
  rounding noise (a student already equal to its teacher) Adam scales that noise up to steps of the
  learning rate's size, and runs of different world sizes part in the second or third digit of the
  loss, as two runs summing in different orders would on one process.
- The loss is summed over ranks after every step (one all-reduce of two numbers), so a NaN on any
  rank stops all of them at the same step; a rank stopping alone would leave the others waiting.

gloo serves CPU training, nccl CUDA (one GPU per rank: cuda:LOCAL_RANK). A process group the
caller initialised already is used as it is.
"""

from __future__ import annotations

import atexit
import inspect
import logging
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..calibration.feeds import Batch
from ..errors import ConfigError
from ..recovery.launch import Launch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataParallel:
    """This rank's part in a data-parallel run: where it trains and which rows of a batch are its."""

    launch: Launch
    device: torch.device

    @property
    def rank(self) -> int:
        return self.launch.rank

    @property
    def world_size(self) -> int:
        return self.launch.world_size

    def wrap(self, module: nn.Module) -> nn.Module:
        """`module` under DDP (gradients averaged during backward). Buffers are the graph's constants,
        equal on every rank by construction: not broadcast each step."""
        ids = [self.device.index] if self.device.type == "cuda" else None
        # torch 2.14 renamed broadcast_buffers (now deprecated, with a warning) to forward_sync_buffers
        quiet = "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
        sync: dict[str, Any] = {"forward_sync_buffers": False} if quiet else {"broadcast_buffers": False}
        return DistributedDataParallel(module, device_ids=ids, **sync)

    def share(self, batch: Batch) -> tuple[Batch, float]:
        """This rank's rows of a global batch, and the weight of its loss (n_r·W/N; 0 for a stand-in row)."""
        n, world = len(batch.indices), self.world_size
        start, stop = self.rank * n // world, (self.rank + 1) * n // world
        weight = (stop - start) * world / n
        if stop == start:  # fewer rows than ranks: one row, weighted 0, keeps this rank in the all-reduce
            start, stop = min(self.rank, n - 1), min(self.rank, n - 1) + 1
        rows = slice(start, stop)
        return Batch({k: v[rows] for k, v in batch.feeds.items()}, batch.origin, batch.indices[rows]), weight

    def total(self, loss_sum: float, rows: int) -> tuple[float, int]:
        """(Σ loss·rows, Σ rows) over every rank: the global batch's loss, the same on all of them."""
        both = torch.tensor([loss_sum, float(rows)], dtype=torch.float64, device=self.device)
        dist.all_reduce(both)
        return float(both[0]), int(both[1])


def join(launch: Launch, device: str) -> DataParallel:
    """Join torchrun's process group (gloo on CPU, nccl on CUDA) and pick this rank's device."""
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device cuda requested but torch sees no GPU (torch.cuda.is_available() is False)")
        if launch.local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {launch.local_rank} has no GPU: torch sees {torch.cuda.device_count()}; "
                              "start at most that many processes per node (--nproc_per_node)")
        torch.cuda.set_device(launch.local_rank)
        where = torch.device("cuda", launch.local_rank)
    else:
        where = torch.device("cpu")
    backend = "nccl" if where.type == "cuda" else "gloo"
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed: data-parallel training is not possible")
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=launch.rank, world_size=launch.world_size)
        atexit.register(_leave)
        log.info("rank %d of %d joined the %s process group", launch.rank, launch.world_size, backend)
    elif dist.get_world_size() != launch.world_size or dist.get_rank() != launch.rank:
        raise ConfigError(f"the process group has rank {dist.get_rank()} of {dist.get_world_size()}, torchrun's "
                          f"environment says {launch.rank} of {launch.world_size}")
    return DataParallel(launch, where)


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()

