"""Prompt tuning: soft prompts prepended to the encoder's text embeddings.

40 prompt vectors ``Embedding(40, d)`` reparameterised by ``Linear(d, 800) -> Tanh ->
Linear(800, d)``; shared by all tasks or one set per task. The prompts get no position
embedding (the model gives positions to the text tokens only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from vladapter.errors import ConfigError
from vladapter.petl.base import TaskModules
from vladapter.petl.contract import HostModel, Injector, Method


@dataclass(frozen=True)
class PromptConfig(Method):
    method: ClassVar[str] = "prompt"
    n_prompts: int = 40
    prompt_hidden: int = 800
    shared: bool = True

    def __post_init__(self):
        for name in ("n_prompts", "prompt_hidden"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"prompt {name} must be a positive integer, got {value!r}")

    @property
    def per_task(self) -> bool:
        return not self.shared

    def inject(self, model: HostModel, tasks: tuple[str, ...], at: Injector) -> None:
        if model.prompts is not None:
            raise ConfigError("the model already has soft prompts: a prompt method is applied twice")
        at.set_attribute(model, "prompts", SoftPrompts(self, tasks, model.d_model, model.context))


class PromptEncoder(nn.Module):
    """The reparameterised prompts of one task: ``(n_prompts, d)``."""

    def __init__(self, n_prompts: int, d_model: int, hidden: int):
        super().__init__()
        self.embed = nn.Embedding(n_prompts, d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, hidden), nn.Tanh(), nn.Linear(hidden, d_model))

    def forward(self) -> torch.Tensor:
        return self.mlp(self.embed.weight)


class SoftPrompts(nn.Module):
    """``model.prompts``: batch size -> ``(B, n_prompts, d)`` for the current task."""

    def __init__(self, config: PromptConfig, tasks: tuple[str, ...], d_model: int, context):
        super().__init__()
        self.context = context
        self.encoders = TaskModules(lambda: PromptEncoder(config.n_prompts, d_model, config.prompt_hidden),
                                    tasks, config.shared)

    def forward(self, batch_size: int) -> torch.Tensor:
        prompts = self.encoders[self.context.task]()
        return prompts.unsqueeze(0).expand(batch_size, -1, -1)
