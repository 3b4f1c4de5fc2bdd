"""VL-PET (Hu et al., ICCV 2023): granularity-controlled gates and the lightweight decoder.

Options of the adapter and compacter configs (``AdapterConfig.gate``,
``AdapterConfig.lightweight_decoder``); the ``vl_pet_*`` presets are adapters with both.

- **Gate** on an encoder sublayer's adapted output ``Y = H + dH``, before dropout and the
  residual: ``Y' = s * G * Y``, with ``X`` the sublayer's input (the residual stream):
  ``large``   ``sigmoid(up'(gelu(down'(X))))``, per token and channel;
  ``middle_x`` ``sigmoid(Linear(d -> 1)(X + Y))``, per token;
  ``middle_y`` one vector per channel: ``1 + v`` as the reference code computes it
              (``one_plus``, v starts at 0), or ``sigmoid(v)`` as the paper's figure draws
              it (``sigmoid``);
  ``small``   one scalar per example: the mean over the *real* tokens (padding excluded;
              the reference averages over the padding too) of ``sigmoid(Linear(2d -> 1)([X; Y]))``.
- **Lightweight decoder**: no modules in the decoder's sublayers, a parallel adapter on
  cross-attention's value projection instead: ``V = W_v E + up(swish(down(E)))``.
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from vladapter.petl.base import OutputTransform, TaskModules
from vladapter.petl.contract import first_input
from vladapter.petl.slots import attention_linears, input_path, slots, stack_path

GATES = ("large", "small", "middle_x", "middle_y")
MIDDLE_Y = ("one_plus", "sigmoid")
# the reference's scripts per LM: adapter and large-gate bottleneck d/8 = 96 (BART) and
# d/4 = 192 (T5), gate scale s 1.0 (BART) and 0.3 (T5)
PER_LM = {"bart": {"reduction_factor": 8, "gate_scale": 1.0}, "t5": {"reduction_factor": 4, "gate_scale": 0.3}}


def per_lm(family: str, key: str, value):
    """``value``, or the reference's setting of ``key`` for ``family`` when it is None."""
    return PER_LM[family][key] if value is None else value


def _normal(linear: nn.Linear, std: float = 0.02) -> nn.Linear:
    nn.init.normal_(linear.weight, std=std)
    nn.init.zeros_(linear.bias)
    return linear


def zeros(linear: nn.Linear) -> nn.Linear:
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    return linear


class Gate(nn.Module):
    """The gate ``G(X, Y)`` of one granularity, broadcastable to ``Y``."""

    def __init__(self, kind: str, d_model: int, bottleneck: int, middle_y: str):
        super().__init__()
        self.kind, self.middle_y = kind, middle_y
        if kind == "large":
            self.down, self.up = _normal(nn.Linear(d_model, bottleneck)), zeros(nn.Linear(bottleneck, d_model))
        elif kind == "middle_x":
            self.proj = _normal(nn.Linear(d_model, 1))
        elif kind == "small":
            self.proj = _normal(nn.Linear(2 * d_model, 1))
        else:
            self.vector = nn.Parameter(torch.zeros(d_model))

    def forward(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if self.kind == "large":
            return torch.sigmoid(self.up(F.gelu(self.down(x))))
        if self.kind == "middle_x":
            return torch.sigmoid(self.proj(x + y))
        if self.kind == "middle_y":
            return 1 + self.vector if self.middle_y == "one_plus" else torch.sigmoid(self.vector)
        per_token = torch.sigmoid(self.proj(torch.cat([x, y], dim=-1)))  # (B, L, 1)
        if mask is None or mask.shape != per_token.shape[:2]:
            return per_token.mean(dim=1, keepdim=True)
        weights = mask.to(per_token.dtype).unsqueeze(-1)
        return (per_token * weights).sum(dim=1, keepdim=True) / weights.sum(dim=1, keepdim=True).clamp(min=1)


class EncoderMask(nn.Module):
    """Keeps the encoder's attention mask of the current forward (the small gate's mean
    runs over the real tokens only). A pre-hook on the encoder stack sets it."""

    def __init__(self):
        super().__init__()
        self.mask: torch.Tensor | None = None

    def capture(self, module, args, kwargs):
        mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
        self.mask = mask if mask is not None and mask.dim() == 2 else None


class GatedOutput(OutputTransform):
    """``s * G(X, Y) * Y`` on its host's output ``Y``; ``X`` comes from a pre-hook on the
    module whose input is the sublayer's input."""

    def __init__(self, gates: TaskModules, scale: float, context, mask_source: EncoderMask | None):
        super().__init__()
        self.gate, self.scale, self.context = gates, scale, context
        # not a child: the one EncoderMask belongs to the encoder stack
        self.__dict__["mask_source"] = mask_source
        self.__dict__["x"] = None

    def capture_input(self, module, args, kwargs):
        self.__dict__["x"] = first_input(args, kwargs, "hidden_states")

    def forward(self, y):
        x, self.__dict__["x"] = self.__dict__["x"], None
        mask = self.mask_source.mask if self.mask_source is not None else None
        g = self.gate[self.context.task](x, y, mask)
        return y * g * self.scale if self.scale != 1.0 else y * g


class ValueAdapter(nn.Module):
    """``up(swish(down(E)))`` of its host projection's input ``E``, added to the host's output."""

    def __init__(self, d_in: int, d_out: int, bottleneck: int, tasks, context, shared: bool):
        super().__init__()
        self.context = context
        self.down = TaskModules(lambda: _normal(nn.Linear(d_in, bottleneck)), tasks, shared)
        self.up = TaskModules(lambda: zeros(nn.Linear(bottleneck, d_out)), tasks, shared)

    def forward(self, e):
        task = self.context.task
        return self.up[task](F.silu(self.down[task](e)))


def inject_gates(model: nn.Module, config, tasks: Iterable[str], at) -> None:
    """A gate of ``config.gate`` on every encoder slot of ``config.kinds``, applied after
    the modules already on the slot (the adapter), before dropout and the residual."""
    tasks, d = tuple(tasks), model.d_model
    factor = config.gate_reduction_factor or per_lm(model.family, "reduction_factor", config.reduction_factor)
    bottleneck = d // factor
    scale = float(per_lm(model.family, "gate_scale", config.gate_scale))
    mask_source = None
    if config.gate == "small":
        encoder = model.get_submodule(stack_path(model.family, "encoder"))
        mask_source = at.add_child(encoder, "gate_mask", EncoderMask())
        at.forward_pre_hook(encoder, mask_source.capture)
    for slot in slots(model, config.kinds):
        if slot.stack != "encoder":
            continue
        gates = TaskModules(lambda: Gate(config.gate, d, bottleneck, config.middle_y), tasks, config.shared)
        gated = GatedOutput(gates, scale, model.context, mask_source)
        at.forward_pre_hook(model.get_submodule(input_path(model, slot)), gated.capture_input)
        at.transform_output(model.get_submodule(slot.path), "gate", gated)


def inject_value_adapters(model: nn.Module, config, tasks: Iterable[str], at) -> None:
    """The lightweight decoder: a parallel adapter on every cross-attention value projection."""
    tasks = tuple(tasks)
    bottleneck = model.d_model // config.value_reduction_factor
    for path in attention_linears(model, ["decoder.cross_attn.v"]):
        linear = model.get_submodule(path)
        at.add_to_output(linear, "value_adapter", ValueAdapter(linear.in_features, linear.out_features, bottleneck,
                                                               tasks, model.context, config.shared))
