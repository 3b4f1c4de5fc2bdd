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
from typing import ClassVar

import torch
from torch import nn

from vladapter.petl.base import TaskModules
from vladapter.petl.contract import HostModel, Injector, first_input
from vladapter.petl.lora import LoRA, LoRAConfig
from vladapter.petl.slots import attention_linears


@dataclass(frozen=True)
class DoRAConfig(LoRAConfig):
    """A :class:`LoRAConfig` (rank, alpha: scale = alpha / rank, dropout, targets, shared)
    whose projections are weight-decomposed: a trained magnitude per output row.
    Mergeable (``petl.merge``): ``W <- m * (W + s B A) / ||W + s B A||``."""

    method: ClassVar[str] = "dora"
    alpha: float = 128.0
    dropout: float = 0.0

    def inject(self, model: HostModel, tasks: tuple[str, ...], at: Injector) -> None:
        for path in attention_linears(model, self.targets):
            linear = model.get_submodule(path)
            dora = at.add_child(linear, self.method, DoRA(linear, self, tasks, model.context))
            at.forward_hook(linear, _DoRAHook(dora))


class Magnitude(nn.Module):
    """The trained magnitude vector ``m`` (one entry per output row of the host)."""

    def __init__(self, initial: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(initial.detach().clone())


class DoRA(LoRA):
    """Rescales its host Linear's output row by row: ``m / ||W + s B A||`` times
    ``W x + s B A x``, plus the host's bias (``LoRA.forward`` is the ``s B A x``)."""

    def __init__(self, host: nn.Linear, config: DoRAConfig, tasks, context):
        super().__init__(host.in_features, host.out_features, config, tasks, context)
        with torch.no_grad():
            norm = torch.linalg.norm(host.weight, dim=1)
        self.magnitude = TaskModules(lambda: Magnitude(norm), tasks, config.shared)

    def row_scale(self, host: nn.Linear, task: str | None) -> torch.Tensor:
        """``m / ||W + s B A||`` per output row; the norm without gradient (the paper's section 4.3)."""
        with torch.no_grad():
            delta = self.B[task].weight @ self.A[task].weight
            norm = torch.linalg.norm(host.weight + self.scale * delta.to(host.weight.dtype), dim=1)
        return self.magnitude[task].weight / norm

    def rescale(self, host: nn.Linear, x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        scale = self.row_scale(host, self.context.task).to(output.dtype)
        if host.bias is None:
            return scale * (output + self(x))
        return scale * (output - host.bias + self(x)) + host.bias

    @torch.no_grad()
    def fold_into(self, host: nn.Linear, task: str | None) -> None:
        """``W <- m * (W + s B A) / ||W + s B A||``: the bare Linear then computes what it
        computed with this DoRA (eval mode)."""
        delta = self.B[task].weight @ self.A[task].weight * self.scale
        weight = (host.weight + delta.to(host.weight.dtype)) * self.row_scale(host, task)[:, None]
        host.weight.copy_(weight)


class _DoRAHook:
    """The forward hook on a DoRA's host (a callable holding the module: deepcopy maps it)."""

    def __init__(self, dora: DoRA):
        self.dora = dora

    def __call__(self, host, args, kwargs, output):
        return self.dora.rescale(host, first_input(args, kwargs, "input"), output)
