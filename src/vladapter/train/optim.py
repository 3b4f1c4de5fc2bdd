"""AdamW without decay on biases and norms, and the paper's warmup-then-linear-decay schedule."""

from __future__ import annotations

import torch
from torch import nn

from vladapter.petl.slots import is_layernorm


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters split into decayed and not decayed (biases, LayerNorm/T5 norm weights)."""
    decay, no_decay = [], []
    seen: set[int] = set()
    for module in model.modules():
        is_norm = is_layernorm(module)
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))  # a shared parameter is optimised once
            (no_decay if is_norm or name.endswith("bias") else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float = 0.01, eps: float = 1e-6,
                    fused: bool = False) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; ``fused``: one kernel for all of them (CUDA only)."""
    groups = [g for g in parameter_groups(model, weight_decay) if g["params"]]
    if not groups:
        raise ValueError("the model has no trainable parameters")
    return torch.optim.AdamW(groups, lr=lr, eps=eps, betas=(0.9, 0.999), fused=fused or None)


def warmup_linear(total_steps: int, warmup_ratio: float):
    """lr factor per step: linear 0 -> 1 over the warmup, then linear 1 -> 0 at ``total_steps``."""
    warmup = int(warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_linear(total_steps, warmup_ratio))
