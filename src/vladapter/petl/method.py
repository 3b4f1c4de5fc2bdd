"""Apply a preset to a VL model, and ask a model what was applied and what it trains."""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import torch
from torch import nn

from vladapter.errors import ConfigError
from vladapter.petl.contract import HostModel, Injector, Mergeable
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
    ``rank=8``. A model takes one method at a time; :func:`remove` takes it out again.
    """
    if getattr(model, "petl_method", None) is not None:
        raise ConfigError(f"a PETL method ({model.petl_method['preset']}) is already applied; "
                          "petl.remove(model) first, or build a fresh model")
    if not isinstance(model, HostModel):
        raise ConfigError(f"{type(model).__name__} is not a VL model petl can apply to (see petl.contract.HostModel)")
    preset, components = resolve(preset, overrides)
    tasks = tuple(tasks)
    if len(set(tasks)) != len(tasks):
        raise ConfigError(f"duplicate task keys in {list(tasks)}")

    at = Injector()
    at.requires_grad = [(p, p.requires_grad) for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in _group_params(model, preset.train):
        p.requires_grad_(True)
    try:
        with torch.device(model.device):
            for component in components:
                component.inject(model, tasks, at)
    except BaseException:
        _undo(model, at)
        raise

    model.petl_injection = at
    model.petl_preset = dataclasses.replace(preset, components=components)
    model.petl_method = {
        "preset": preset.name,
        "tasks": list(tasks),
        "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
        "components": [{"method": c.method, **dataclasses.asdict(c)} for c in components],
        "train": list(preset.train),
        "task_prefix": preset.task_prefix,
    }
    return model


def _undo(model: nn.Module, at: Injector) -> None:
    at.remove()
    for p, flag in at.requires_grad:
        p.requires_grad_(flag)


def remove(model: nn.Module) -> nn.Module:
    """Take the applied method out of ``model``: its modules, hooks and attributes go, and
    every parameter's ``requires_grad`` is as before :func:`apply`. Base parameters the
    preset trained in place (visual embedding, LayerNorms, biases) keep their values: a
    model that was not trained computes exactly what it did before ``apply``."""
    at = _injection(model)
    _undo(model, at)
    del model.petl_injection, model.petl_preset
    model.petl_method = None
    return model


def merge(model: nn.Module, task: str | None = None) -> nn.Module:
    """Fold a mergeable method (LoRA) into the base weights and remove it (peft's
    ``merge_and_unload``): the bare model then computes what the model with the method
    computed (in eval mode). A method with per-task modules merges for one ``task``."""
    at = _injection(model)
    preset = model.petl_preset
    if not preset.mergeable:
        cannot = [c.method for c in preset.components if not c.mergeable] or ["no added modules"]
        raise ConfigError(f"{preset.name} cannot be merged into the weights ({', '.join(cannot)}); "
                          "mergeable presets: " + ", ".join(n for n, p in PRESETS.items() if p.mergeable))
    if preset.per_task and task not in model.petl_method["tasks"]:
        raise ConfigError(f"{preset.name} has modules per task: merge one of them, "
                          f"petl.merge(model, task=<one of {model.petl_method['tasks']}>)")
    for host, _, module in at.children:
        if isinstance(module, Mergeable):
            module.fold_into(host, task)
    return remove(model)


@contextlib.contextmanager
def disabled(model: nn.Module) -> Iterator[nn.Module]:
    """``with petl.disabled(model):`` the model computes without the method's modules (its
    hooks pass through, ``model.prompts`` is None), as peft's ``disable_adapter``; base
    parameters the preset trains in place keep their current values."""
    at = _injection(model)
    at.set_enabled(False)
    try:
        yield model
    finally:
        at.set_enabled(True)


def _injection(model: nn.Module) -> Injector:
    at = getattr(model, "petl_injection", None)
    if at is None:
        raise ConfigError("no PETL method is applied to this model (petl.apply first)")
    return at


def needs_backbone_grad(model: nn.Module) -> bool:
    """Whether training the applied method back-propagates through the frozen backbone
    (true without a method: pre-training trains the whole model)."""
    preset = getattr(model, "petl_preset", None)
    return True if preset is None else preset.needs_backbone_grad


def _group_params(model: nn.Module, groups: Iterable[str]) -> list[nn.Parameter]:
    params: list[nn.Parameter] = []
    for group in groups:
        if group == "all":
            params += list(model.parameters())
        elif group == "visual":
            params += list(model.visual.parameters())
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
