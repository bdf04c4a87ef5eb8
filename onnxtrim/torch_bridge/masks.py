"""Fixed masks on Parameters that training must not undo.

Gradual pruning (Zhu & Gupta 2017) and Relief's connection pruning train with some weights held
at zero. Zeroing their gradients is not enough: Adam's momentum and weight decay still move them,
so the mask is also multiplied into the weights after every optimizer step. `finetune` calls
`before_step()` after the backward pass and `after_step()` after the optimizer step; a schedule
updates masks from `on_step` with `set()`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class MaskSet:
    def __init__(self) -> None:
        self._masks: dict[int, tuple[nn.Parameter, torch.Tensor]] = {}

    def set(self, param: nn.Parameter, mask: torch.Tensor) -> None:
        """Hold `param` at zero where `mask` is 0 (bool or 0/1 of the parameter's shape), from now on."""
        if tuple(mask.shape) != tuple(param.shape):
            raise ValueError(f"mask of shape {list(mask.shape)} for a parameter of shape {list(param.shape)}")
        fixed = mask.detach().to(device=param.device, dtype=param.dtype)
        self._masks[id(param)] = (param, fixed)
        with torch.no_grad():
            param.mul_(fixed)

    @torch.no_grad()
    def grow_by_magnitude(self, param: nn.Parameter, count: int) -> None:
        """Mask `param` until `count` entries are masked, adding the smallest |w| among the unmasked
        (ties by flat index); entries already masked stay masked (Zhu & Gupta never revive them)."""
        current = self._masks.get(id(param), (param, torch.ones_like(param)))[1].bool()
        extra = count - int((~current).sum())
        if extra > 0:
            magnitude = torch.where(current, param.detach().abs(), torch.inf).reshape(-1)
            current = current.clone()
            current.view(-1)[torch.sort(magnitude, stable=True).indices[:extra]] = False
        self.set(param, current)

    def keep(self, param: nn.Parameter) -> np.ndarray:
        """The mask of `param` as a numpy bool array (all True when it has none)."""
        mask = self._masks.get(id(param), (param, torch.ones_like(param)))[1]
        return mask.detach().cpu().numpy().astype(bool)

    def remove(self, param: nn.Parameter) -> None:
        self._masks.pop(id(param), None)

    def __len__(self) -> int:
        return len(self._masks)

    def masks(self) -> list[tuple[nn.Parameter, torch.Tensor]]:
        return list(self._masks.values())

    def to(self, device: torch.device | str) -> None:
        """Follow the parameters to `device` (call after moving the module)."""
        self._masks = {k: (p, m.to(p.device)) for k, (p, m) in self._masks.items()}

    @torch.no_grad()
    def before_step(self) -> None:
        for param, mask in self._masks.values():
            if param.grad is not None:
                param.grad.mul_(mask.to(param.grad.device))

    @torch.no_grad()
    def after_step(self) -> None:
        for param, mask in self._masks.values():
            param.mul_(mask.to(param.device))
