"""Hyperformer: a hypernetwork generates every adapter's weights from task + layer embeddings.

Per stack (encoder, decoder: each its own hypernetwork):
``z_l = LayerNorm(Linear(ReLU(Linear(task_emb ++ layer_emb_l))))`` (1024 -> 128 -> 8), then
one linear generator maps ``z_l`` to the down/up weights and biases of the layer's adapters
of every slot kind (self-attention, FFN, cross-attention). All layers' weights come out of
ONE batched call when the stack starts its forward; each slot then reads its slice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from vladapter.errors import ConfigError
from vladapter.petl.base import OutputTransform
from vladapter.petl.contract import HostModel, Injector, Method
from vladapter.petl.slots import KINDS, STACKS, n_layers, slots, stack_kinds, stack_path


@dataclass(frozen=True)
class HyperformerConfig(Method):
    method: ClassVar[str] = "hyperformer"
    reduction_factor: int = 8
    task_dim: int = 512
    layer_dim: int = 512
    hidden_dim: int = 128
    z_dim: int = 8
    kinds: tuple[str, ...] = KINDS
    generator_std: float = 1e-2

    def __post_init__(self):
        for name in ("reduction_factor", "task_dim", "layer_dim", "hidden_dim", "z_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"hyperformer {name} must be a positive integer, got {value!r}")
        object.__setattr__(self, "kinds", tuple(self.kinds))
        if not self.kinds or set(self.kinds) - set(KINDS):
            raise ConfigError(f"hyperformer kinds must be a non-empty subset of {KINDS}, got {self.kinds}")

    @property
    def per_task(self) -> bool:
        return True

    def inject(self, model: HostModel, tasks: tuple[str, ...], at: Injector) -> None:
        if not tasks:
            raise ConfigError("hyperformer needs the task keys: pass tasks=[...] to petl.apply")
        d = model.d_model
        if d % self.reduction_factor:
            raise ConfigError(f"d_model {d} is not divisible by reduction_factor {self.reduction_factor}")
        for stack in STACKS:
            kinds = stack_kinds(stack, self.kinds)
            if not kinds:
                continue
            hypernet = HyperNetwork(self, tasks, n_layers(model, stack), kinds, d, model.context)
            host = model.get_submodule(stack_path(model.family, stack))
            at.add_child(host, self.method, hypernet)
            at.forward_pre_hook(host, hypernet.generate_hook)
            for slot in slots(model, kinds):
                if slot.stack == stack:
                    at.transform_output(model.get_submodule(slot.path), self.method,
                                        HyperAdapter(hypernet, slot.layer, kinds.index(slot.kind)))


class HyperNetwork(nn.Module):
    """Generates the adapters of one stack: ``weights(task) -> (layers, kinds, P)``."""

    def __init__(self, config: HyperformerConfig, tasks: tuple[str, ...], n_layers: int,
                 kinds: tuple[str, ...], d_model: int, context):
        super().__init__()
        self.context = context
        self.task_index = {task: i for i, task in enumerate(tasks)}
        self.d_model, self.bottleneck = d_model, d_model // config.reduction_factor
        self.n_layers, self.n_kinds = n_layers, len(kinds)
        d, b = d_model, self.bottleneck
        self.sizes = (b * d, b, d * b, d)  # down weight, down bias, up weight, up bias
        self.task_embed = nn.Embedding(len(tasks), config.task_dim)
        self.layer_embed = nn.Embedding(n_layers, config.layer_dim)
        self.project = nn.Sequential(
            nn.Linear(config.task_dim + config.layer_dim, config.hidden_dim), nn.ReLU(),
            nn.Linear(config.hidden_dim, config.z_dim), nn.LayerNorm(config.z_dim))
        self.generator = nn.Linear(config.z_dim, self.n_kinds * sum(self.sizes))
        nn.init.normal_(self.generator.weight, std=config.generator_std)
        nn.init.zeros_(self.generator.bias)
        self.generated: torch.Tensor | None = None

    def __getstate__(self):
        # the weights of the last forward are part of an autograd graph: never copy them
        return {**super().__getstate__(), "generated": None}

    def weights(self, task: str | None) -> torch.Tensor:
        """Every adapter parameter of this stack for ``task``: ``(layers, kinds, P)``."""
        if task not in self.task_index:
            raise ConfigError(f"hyperformer has no task embedding for {task!r}; it was applied for "
                              f"tasks {sorted(self.task_index)}: pass task=<one of them> to the model")
        task_emb = self.task_embed.weight[self.task_index[task]].expand(self.n_layers, -1)
        z = self.project(torch.cat([task_emb, self.layer_embed.weight], dim=-1))
        return self.generator(z).view(self.n_layers, self.n_kinds, -1)

    def generate_hook(self, stack: nn.Module, args, kwargs):
        self.generated = self.weights(self.context.task)

    def adapt(self, h: torch.Tensor, layer: int, kind: int) -> torch.Tensor:
        down_w, down_b, up_w, up_b = self.generated[layer, kind].split(self.sizes)
        hidden = F.gelu(F.linear(h, down_w.view(self.bottleneck, self.d_model), down_b))
        return h + F.linear(hidden, up_w.view(self.d_model, self.bottleneck), up_b)


class HyperAdapter(OutputTransform):
    """A parameter-free slot: applies the generated adapter (layer, kind) of its hypernetwork."""

    def __init__(self, hypernet: HyperNetwork, layer: int, kind: int):
        super().__init__()
        self._hypernet = (hypernet,)  # a tuple, so the hypernetwork is not also a child here
        self.layer, self.kind = layer, kind

    def forward(self, h):
        return self._hypernet[0].adapt(h, self.layer, self.kind)
