"""Houlsby adapters: ``h + up(gelu(down(h)))`` after every attention and feed-forward output.

single (shared by all tasks), multiple (one set per task) or half-shared (down-projections
per task, up-projections shared: the reference code's ``share_up_sampler``). VL-PET's
gate and lightweight decoder are options (``gate``, ``lightweight_decoder``: petl/vl_pet.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import torch.nn.functional as F
from torch import nn

from vladapter.errors import ConfigError
from vladapter.petl import vl_pet
from vladapter.petl.base import OutputTransform, TaskModules, init_small
from vladapter.petl.contract import HostModel, Injector, Method
from vladapter.petl.slots import KINDS, slots

Linear = Callable[[int, int], nn.Module]


@dataclass(frozen=True)
class AdapterConfig(Method):
    """reduction_factor: bottleneck = d_model / reduction_factor (8: 96 for d = 768); null: VL-PET's
              per LM (8 BART, 4 T5: 96 / 192)
    shared:   one adapter set for all tasks; else one per task
    share_up: with shared=False, still share the up-projections (half-shared adapters)
    kinds:    which sublayer outputs get an adapter (Houlsby: all three)
    zero_up:  up-projections start at zero (VL-PET) instead of near zero
    gate:     VL-PET's gate on the encoder adapters' outputs: large | small | middle_x | middle_y, or null
    gate_reduction_factor: the large gate's bottleneck = d_model / this (null: reduction_factor's)
    gate_scale: s of Y' = s G Y (null: VL-PET's per LM, 1.0 BART, 0.3 T5)
    middle_y: the middle_y gate: one_plus (G = 1 + v, the reference code) | sigmoid (the paper's figure)
    lightweight_decoder: VL-PET's decoder: no adapters in the decoder, a parallel adapter on
              cross-attention's value projection (bottleneck d_model / value_reduction_factor)
    value_reduction_factor: that adapter's reduction (8: 96 for d = 768)
    """

    method: ClassVar[str] = "adapter"
    reduction_factor: int | None = 8
    shared: bool = True
    share_up: bool = False
    kinds: tuple[str, ...] = KINDS
    zero_up: bool = False
    gate: str | None = None
    gate_reduction_factor: int | None = None
    gate_scale: float | None = 1.0
    middle_y: str = "one_plus"
    lightweight_decoder: bool = False
    value_reduction_factor: int = 8

    def __post_init__(self):
        for key in ("reduction_factor", "gate_reduction_factor", "value_reduction_factor"):
            value = getattr(self, key)
            if value is None and key != "value_reduction_factor":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"adapter {key} must be a positive integer, got {value!r}")
        object.__setattr__(self, "kinds", tuple(self.kinds))
        if not self.kinds or set(self.kinds) - set(KINDS):
            raise ConfigError(f"adapter kinds must be a non-empty subset of {KINDS}, got {self.kinds}")
        if self.gate is not None and self.gate not in vl_pet.GATES:
            raise ConfigError(f"adapter gate must be one of {', '.join(vl_pet.GATES)} or null, got {self.gate!r}")
        if self.middle_y not in vl_pet.MIDDLE_Y:
            raise ConfigError(f"adapter middle_y must be {' or '.join(vl_pet.MIDDLE_Y)}, got {self.middle_y!r}")
        if self.gate_scale is not None and not (isinstance(self.gate_scale, (int, float)) and self.gate_scale > 0):
            raise ConfigError(f"adapter gate_scale must be a number above 0 or null, got {self.gate_scale!r}")

    @property
    def per_task(self) -> bool:
        return not self.shared

    def bottleneck(self, d_model: int, family: str = "bart") -> int:
        factor = vl_pet.per_lm(family, "reduction_factor", self.reduction_factor)
        if d_model % factor:
            raise ConfigError(f"d_model {d_model} is not divisible by reduction_factor {factor}")
        return d_model // factor

    def make_linear(self, zero: bool = False) -> Linear:
        if zero:
            return lambda n_in, n_out: vl_pet.zeros(nn.Linear(n_in, n_out))
        return lambda n_in, n_out: init_small(nn.Linear(n_in, n_out))

    def inject(self, model: HostModel, tasks: tuple[str, ...], at: Injector) -> None:
        d = model.d_model
        for slot in slots(model, self.kinds):
            if self.lightweight_decoder and slot.stack == "decoder":
                continue
            adapter = Adapter(d, self.bottleneck(d, model.family), tasks, model.context, self.shared,
                              self.shared or self.share_up, self.make_linear(), self.make_linear(zero=self.zero_up))
            at.transform_output(model.get_submodule(slot.path), self.method, adapter)
        if self.gate is not None:
            vl_pet.inject_gates(model, self, tasks, at)
        if self.lightweight_decoder:
            vl_pet.inject_value_adapters(model, self, tasks, at)


class Adapter(OutputTransform):
    """``h + up[task](gelu(down[task](h)))``; ``linear`` builds the two projections."""

    def __init__(self, d_model: int, bottleneck: int, tasks: tuple[str, ...], context,
                 shared_down: bool, shared_up: bool, linear: Linear, up_linear: Linear | None = None):
        super().__init__()
        self.context = context
        self.down = TaskModules(lambda: linear(d_model, bottleneck), tasks, shared_down)
        self.up = TaskModules(lambda: (up_linear or linear)(bottleneck, d_model), tasks, shared_up)

    def forward(self, h):
        task = self.context.task
        return h + self.up[task](F.gelu(self.down[task](h)))
