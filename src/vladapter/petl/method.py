"""Apply a preset to a VL model, and ask a model what was applied and what it trains."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterable

import torch
from torch import nn

from vladapter.errors import ConfigError
from vladapter.petl.registry import PRESETS, Preset
from vladapter.petl.slots import is_layernorm, stack_path


@dataclass(frozen=True)
class ParamCount:
    trainable: int
    total: int

    @property
    def percent(self) -> float:
        return 100.0 * self.trainable / self.total if self.total else 0.0


def resolve(preset: str | Preset, overrides: dict[str, Any]) -> tuple[Preset, tuple]:
    """The preset and its component configs with ``overrides`` applied (validated)."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ConfigError(f"unknown PETL method {preset!r}; choose from: {', '.join(PRESETS)}")
        preset = PRESETS[preset]
    components = list(preset.components)
    for key, value in overrides.items():
        hits = [i for i, c in enumerate(components) if key in {f.name for f in dataclasses.fields(c)}]
        if not hits:
            allowed = sorted({f.name for c in components for f in dataclasses.fields(c)})
            raise ConfigError(f"{preset.name} has no option {key!r}; its options: {', '.join(allowed) or 'none'}")
        for i in hits:
            value = tuple(value) if isinstance(value, list) else value
            components[i] = dataclasses.replace(components[i], **{key: value})
    return preset, tuple(components)


def apply(model: nn.Module, preset: str | Preset, tasks: Iterable[str] = (), **overrides: Any) -> nn.Module:
    """Freeze ``model`` except what ``preset`` trains, inject its modules; returns ``model``.

    ``tasks``: the task keys per-task modules are made for (the ``task=`` of forward picks
    one). ``overrides``: fields of the preset's configs, e.g. ``reduction_factor=16``,
    ``rank=8``. A model takes one method, once.
    """
    if getattr(model, "petl_method", None) is not None:
        raise ConfigError(f"a PETL method ({model.petl_method['preset']}) is already applied; build a fresh model")
    preset, components = resolve(preset, overrides)
    tasks = tuple(tasks)
    if len(set(tasks)) != len(tasks):
        raise ConfigError(f"duplicate task keys in {list(tasks)}")

    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.visual.parameters():
        p.requires_grad_(True)
    for p in _group_params(model, preset.train):
        p.requires_grad_(True)
    with torch.device(model.device):
        for component in components:
            component.inject(model, tasks)

    model.petl_method = {
        "preset": preset.name,
        "tasks": list(tasks),
        "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
        "components": [{"method": c.method, **dataclasses.asdict(c)} for c in components],
        "train": ["visual", *preset.train],
        "task_prefix": preset.task_prefix,
    }
    return model


def _group_params(model: nn.Module, groups: Iterable[str]) -> list[nn.Parameter]:
    params: list[nn.Parameter] = []
    for group in groups:
        if group == "all":
            params += list(model.parameters())
        elif group == "layernorm":
            params += [p for m in model.lm.modules() if is_layernorm(m) for p in m.parameters(recurse=False)]
        elif group == "encoder_layernorm":
            encoder = model.get_submodule(stack_path(model.family, "encoder"))
            params += [p for m in encoder.modules() if is_layernorm(m) for p in m.parameters(recurse=False)]
        elif group == "bias":
            params += [p for name, p in model.lm.named_parameters() if name.rsplit(".", 1)[-1] == "bias"]
        else:
            raise ConfigError(f"unknown trainable group {group!r}")
    return params


def count(model: nn.Module) -> ParamCount:
    """Trainable and total parameters of ``model`` (tied weights counted once)."""
    params = list(model.parameters())
    return ParamCount(sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params))


def uses_task_prefix(model: nn.Module) -> bool:
    """Whether inputs need the task prefix ("vqa: ..."): true unless a module is task-specific.

    A model without a PETL method (e.g. during pre-training) uses prefixes, like full
    fine-tuning.
    """
    method = getattr(model, "petl_method", None)
    return True if method is None else bool(method["task_prefix"])
