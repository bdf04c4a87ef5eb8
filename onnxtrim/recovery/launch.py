"""Whether this process is one of several that `torchrun` started, read without importing torch.

torchrun (torch.distributed.run) tells each worker who it is through the environment: WORLD_SIZE,
RANK and LOCAL_RANK (plus MASTER_ADDR/MASTER_PORT for the rendezvous, which torch reads itself).
That is torch's launcher protocol, not an onnxtrim option: the house rule against behaviour chosen
by environment variables yields to it because data-parallel training has no other way to learn
its rank, and because the result does not depend on it beyond how each batch is shared out
(`torch_bridge.distributed`). The API asks `launched()` to decide which process writes the
outputs (rank 0 only); fine-tuning asks it to decide whether to join the process group.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import ConfigError

_KEYS = ("WORLD_SIZE", "RANK", "LOCAL_RANK")


@dataclass(frozen=True)
class Launch:
    """This worker's place among the `world_size` processes torchrun started."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def writes(self) -> bool:
        """Only rank 0 writes outputs: every rank computes the same model, one publishes it."""
        return self.rank == 0


def launched(environ: Mapping[str, str] | None = None) -> Launch | None:
    """This worker under torchrun, or None for a plain process (no WORLD_SIZE/RANK/LOCAL_RANK)."""
    env = os.environ if environ is None else environ
    present = [k for k in _KEYS if k in env]
    if not present:
        return None
    if len(present) < len(_KEYS):
        missing = ", ".join(k for k in _KEYS if k not in env)
        raise ConfigError(f"torchrun's environment is incomplete: {', '.join(present)} set but not {missing} "
                          "(start onnxtrim with torchrun, or unset them)")
    try:
        rank, world, local = int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"])
    except ValueError as exc:
        raise ConfigError(f"torchrun's WORLD_SIZE/RANK/LOCAL_RANK must be integers, got "
                          f"{', '.join(repr(env[k]) for k in _KEYS)}") from exc
    if not (world >= 1 and 0 <= rank < world and local >= 0):
        raise ConfigError(f"torchrun's environment is inconsistent: RANK {rank}, WORLD_SIZE {world}, "
                          f"LOCAL_RANK {local}")
    return Launch(rank, world, local)
