"""DoRA (Liu et al., ICML 2024): LoRA with the weight split into magnitude and direction.

``W' = m * (W + s B A) / ||W + s B A||_c``: the norm is per output row (the paper's
column norm of ``W^T``), and, as the paper's section 4.3 suggests (and peft does), it is
a constant in the backward pass (detached), which saves the norm's gradient. ``m`` starts
at ``||W||_c``, B at zero, so an untrained DoRA leaves the outputs unchanged. The host
Linear's bias is added after the rescaling.

A variant of LoRA, not a copy (:class:`LoRA` does the low-rank part): NVlabs/DoRA's
VL-BART setting is rank 128 on the paper's LoRA targets with scale 1 (its ``DoraLinear``
uses ``lora_alpha = r``) and no dropout on the LoRA input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Iterable

import torch
from torch import nn

from vladapter.errors import ConfigError
from vladapter.petl.base import TaskModules, inject
from vladapter.petl.lora import LoRA, LoRAConfig
from vladapter.petl.slots import attention_linears


@dataclass(frozen=True)
class DoRAConfig(LoRAConfig):
    """A :class:`LoRAConfig` (rank, alpha: scale = alpha / rank, dropout, targets, shared)
    whose projections are weight-decomposed: a trained magnitude per output row."""

    method: ClassVar[str] = "dora"
    alpha: float = 128.0
    dropout: float = 0.0

    def inject(self, model: nn.Module, tasks: Iterable[str]) -> None:
        tasks = tuple(tasks)
        for path in attention_linears(model, self.targets):
            linear = model.get_submodule(path)
            inject(linear, self.method, DoRA(linear, self, tasks, model.context))


class Magnitude(nn.Module):
    """The trained magnitude vector ``m`` (one entry per output row of the host)."""

    def __init__(self, initial: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(initial.detach().clone())


class DoRA(LoRA):
    """Rescales its host Linear's output row by row: ``m / ||W + s B A||`` times
    ``W x + s B A x``, plus the host's bias."""

    def __init__(self, host: nn.Linear, config: DoRAConfig, tasks, context):
        super().__init__(host.in_features, host.out_features, config, tasks, context)
        with torch.no_grad():
            norm = torch.linalg.norm(host.weight, dim=1)
        self.magnitude = TaskModules(lambda: Magnitude(norm), tasks, config.shared)
        self.merged = False

    def weight_norm(self, host: nn.Linear) -> torch.Tensor:
        """``||W + s B A||`` per output row, without gradient (the paper's section 4.3)."""
        task = self.context.task
        with torch.no_grad():
            delta = self.B[task].weight @ self.A[task].weight
            return torch.linalg.norm(host.weight + self.scale * delta.to(host.weight.dtype), dim=1)

    def output_hook(self, host, args, output):
        if self.merged:
            return output
        task = self.context.task
        scale = (self.magnitude[task].weight / self.weight_norm(host)).to(output.dtype)
        if host.bias is None:
            return scale * (output + self.delta(args[0]))
        return scale * (output - host.bias + self.delta(args[0])) + host.bias

    @torch.no_grad()
    def merge(self, host: nn.Linear) -> None:
        """Fold the decomposed weight into ``host.weight`` (a shared DoRA only); the hook
        then passes the host's output through."""
        if not self.B.is_shared:
            raise ConfigError("a per-task DoRA (shared: false) cannot be merged into one weight: each task has its own")
        if self.merged:
            return
        norm = self.weight_norm(host)
        delta = self.B[None].weight @ self.A[None].weight
        weight = (host.weight + self.scale * delta) * (self.magnitude[None].weight / norm)[:, None]
        host.weight.copy_(weight)
        self.merged = True


def merge(model: nn.Module) -> nn.Module:
    """Fold every DoRA of ``model`` into its host's weight; outputs stay the same (up to
    float rounding). The model no longer trains the DoRA tensors afterwards."""
    for module in list(model.modules()):
        dora = getattr(module, "_modules", {}).get(DoRAConfig.method)
        if isinstance(dora, DoRA):
            dora.merge(module)
            for p in dora.parameters():
                p.requires_grad_(False)
    return model
