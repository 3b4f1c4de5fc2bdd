"""Houlsby adapters: ``h + up(gelu(down(h)))`` after every attention and feed-forward output.

single (shared by all tasks), multiple (one set per task) or half-shared (down-projections
per task, up-projections shared: the reference code's ``share_up_sampler``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import torch.nn.functional as F
from torch import nn

from vladapter.errors import ConfigError
from vladapter.petl.base import OutputTransform, TaskModules, init_small
from vladapter.petl.contract import HostModel, Injector, Method
from vladapter.petl.slots import KINDS, slots

Linear = Callable[[int, int], nn.Module]


@dataclass(frozen=True)
class AdapterConfig(Method):
    """reduction_factor: bottleneck = d_model / reduction_factor (8: 96 for d = 768)
    shared:   one adapter set for all tasks; else one per task
    share_up: with shared=False, still share the up-projections (half-shared adapters)
    kinds:    which sublayer outputs get an adapter (Houlsby: all three)
    """

    method: ClassVar[str] = "adapter"
    reduction_factor: int = 8
    shared: bool = True
    share_up: bool = False
    kinds: tuple[str, ...] = KINDS

    def __post_init__(self):
        if not isinstance(self.reduction_factor, int) or self.reduction_factor < 1:
            raise ConfigError(f"adapter reduction_factor must be a positive integer, got {self.reduction_factor!r}")
        object.__setattr__(self, "kinds", tuple(self.kinds))
        if not self.kinds or set(self.kinds) - set(KINDS):
            raise ConfigError(f"adapter kinds must be a non-empty subset of {KINDS}, got {self.kinds}")

    @property
    def per_task(self) -> bool:
        return not self.shared

    def bottleneck(self, d_model: int) -> int:
        if d_model % self.reduction_factor:
            raise ConfigError(f"d_model {d_model} is not divisible by reduction_factor {self.reduction_factor}")
        return d_model // self.reduction_factor

    def make_linear(self) -> Linear:
        return lambda n_in, n_out: init_small(nn.Linear(n_in, n_out))

    def inject(self, model: HostModel, tasks: tuple[str, ...], at: Injector) -> None:
        d = model.d_model
        for slot in slots(model, self.kinds):
            adapter = Adapter(d, self.bottleneck(d), tasks, model.context, self.shared,
                              self.shared or self.share_up, self.make_linear())
            at.transform_output(model.get_submodule(slot.path), self.method, adapter)


class Adapter(OutputTransform):
    """``h + up[task](gelu(down[task](h)))``; ``linear`` builds the two projections."""

    def __init__(self, d_model: int, bottleneck: int, tasks: tuple[str, ...], context,
                 shared_down: bool, shared_up: bool, linear: Linear):
        super().__init__()
        self.context = context
        self.down = TaskModules(lambda: linear(d_model, bottleneck), tasks, shared_down)
        self.up = TaskModules(lambda: linear(bottleneck, d_model), tasks, shared_up)

    def forward(self, h):
        task = self.context.task
        return h + self.up[task](F.gelu(self.down[task](h)))
