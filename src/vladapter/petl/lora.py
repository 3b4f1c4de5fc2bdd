"""LoRA: ``y = W x + (alpha / r) * B A dropout(x)`` on chosen attention projections.

Paper setting: rank 128, alpha 32, dropout 0.1, on q and v of encoder self-attention,
decoder self-attention and decoder cross-attention; A kaiming-uniform, B zeros (so an
untrained LoRA leaves the model's outputs unchanged). The preset trains all biases too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from vladapter.errors import ConfigError
from vladapter.petl.base import TaskModules
from vladapter.petl.contract import HostModel, Injector, Mergeable, Method
from vladapter.petl.slots import attention_linears

PAPER_TARGETS = ("encoder.self_attn.q", "encoder.self_attn.v", "decoder.self_attn.q",
                 "decoder.self_attn.v", "decoder.cross_attn.q", "decoder.cross_attn.v")


@dataclass(frozen=True)
class LoRAConfig(Method):
    """rank, alpha (scale = alpha / rank), dropout on the LoRA input; targets:
    ``<encoder|decoder>.<self_attn|cross_attn>.<q|k|v|o>``; shared or one LoRA per task."""

    method: ClassVar[str] = "lora"
    mergeable: ClassVar[bool] = True  # W += scale * B A (per-task LoRA: for one task)
    rank: int = 128
    alpha: float = 32.0
    dropout: float = 0.1
    targets: tuple[str, ...] = PAPER_TARGETS
    shared: bool = True

    def __post_init__(self):
        if not isinstance(self.rank, int) or self.rank < 1:
            raise ConfigError(f"lora rank must be a positive integer, got {self.rank!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"lora dropout must be in [0, 1), got {self.dropout!r}")
        object.__setattr__(self, "targets", tuple(self.targets))
        if not self.targets:
            raise ConfigError("lora targets must not be empty")

    @property
    def per_task(self) -> bool:
        return not self.shared

    def inject(self, model: HostModel, tasks: tuple[str, ...], at: Injector) -> None:
        for path in attention_linears(model, self.targets):
            linear = model.get_submodule(path)
            at.add_to_output(linear, self.method,
                             LoRA(linear.in_features, linear.out_features, self, tasks, model.context))


class LoRA(nn.Module, Mergeable):
    """The low-rank update of its host Linear's input, added to the host's output."""

    def __init__(self, in_features: int, out_features: int, config: LoRAConfig, tasks, context):
        super().__init__()
        self.context = context
        self.scale = config.alpha / config.rank
        self.dropout = nn.Dropout(config.dropout)
        self.A = TaskModules(lambda: _kaiming(nn.Linear(in_features, config.rank, bias=False)), tasks, config.shared)
        self.B = TaskModules(lambda: _zeros(nn.Linear(config.rank, out_features, bias=False)), tasks, config.shared)

    def forward(self, x):
        task = self.context.task
        return self.B[task](self.A[task](self.dropout(x))) * self.scale

    @torch.no_grad()
    def fold_into(self, host: nn.Linear, task: str | None) -> None:
        """``W += scale * B A``: the bare Linear then computes ``W x + b + delta(x)`` (eval)."""
        delta = self.B[task].weight @ self.A[task].weight * self.scale
        host.weight += delta.to(host.weight.dtype)


def _kaiming(linear: nn.Linear) -> nn.Linear:
    nn.init.kaiming_uniform_(linear.weight, a=math.sqrt(5))
    return linear


def _zeros(linear: nn.Linear) -> nn.Linear:
    nn.init.zeros_(linear.weight)
    return linear
