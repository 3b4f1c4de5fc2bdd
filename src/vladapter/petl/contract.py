"""The contract every PETL method implements, and what it may use of the model.

A method is a frozen config dataclass deriving from :class:`Method`. Its capabilities are
declared attributes, never found by isinstance or by name:

- ``method``: its name (also the name of the child modules it adds, e.g. ``...fc2.adapter``)
- ``per_task``: it holds modules per task (routed by ``model.context.task``); such presets
  train without the task prefix in the text
- ``needs_backbone_grad``: gradients must flow back through the frozen backbone (a module
  inside it trains). ``False`` for a method beside the backbone (a side network that only
  reads the backbone's activations through taps): the trainer may run the backbone under
  ``torch.no_grad``
- ``mergeable``: :func:`vladapter.petl.merge` can fold it into the base weights

``inject(model, tasks, at)`` adds the method to a :class:`HostModel` through the
:class:`Injector` ``at`` only (children, hooks, attributes), so ``petl.remove`` can undo
every change and ``petl.merge`` can find what to fold.
"""

from __future__ import annotations

import abc
from typing import Any, Callable, ClassVar, Iterable, Protocol, runtime_checkable

import torch
from torch import nn

from vladapter.errors import ConfigError


@runtime_checkable
class HostModel(Protocol):
    """What a method may use of the model it is applied to (``VLModel`` implements it).

    ``lm`` the unmodified HF encoder-decoder; ``visual`` the visual embedding (a train
    group); ``family`` "t5" | "bart" (picks the slot table, ``petl/slots.py``);
    ``context`` the per-call state (``.task``, ``.text_span``); ``prompts`` None or the
    module producing ``(B, P, d_model)`` encoder prefixes. Paths into the model come from
    ``slots.py`` and are resolved with ``get_submodule``.
    """

    lm: nn.Module
    visual: nn.Module
    prompts: nn.Module | None
    context: Any

    @property
    def family(self) -> str: ...

    @property
    def d_model(self) -> int: ...

    @property
    def device(self) -> torch.device: ...

    def get_submodule(self, target: str) -> nn.Module: ...


class Method(abc.ABC):
    """Base of every method config (a frozen dataclass). Subclasses set ``method`` and
    implement ``per_task`` and ``inject``; capability defaults: needs the backbone's
    gradients, cannot merge."""

    method: ClassVar[str]
    needs_backbone_grad: ClassVar[bool] = True
    mergeable: ClassVar[bool] = False

    @property
    @abc.abstractmethod
    def per_task(self) -> bool:
        """Whether the method holds modules per task."""

    @abc.abstractmethod
    def inject(self, model: HostModel, tasks: tuple[str, ...], at: "Injector") -> None:
        """Add the method's modules and hooks to ``model``, through ``at`` only."""


class Mergeable(abc.ABC):
    """An injected module that can fold itself into its host (``petl.merge``)."""

    @abc.abstractmethod
    def fold_into(self, host: nn.Module, task: str | None) -> None:
        """Change ``host``'s weights in place so that the bare host computes what host +
        this module computed for ``task``."""


def first_input(args: tuple, kwargs: dict, name: str) -> Any:
    """A sublayer's first input whether it was passed positionally or as ``name=``."""
    if args:
        return args[0]
    if name in kwargs:
        return kwargs[name]
    raise ConfigError(f"hooked module was called without its {name!r} input (args={len(args)}, "
                      f"kwargs={sorted(kwargs)}): a transformers version that calls it differently")


def _replace_output(output, fn):
    if isinstance(output, tuple):
        return (fn(output[0]), *output[1:])
    if hasattr(output, "last_hidden_state"):  # a ModelOutput: replace its first field
        output.last_hidden_state = fn(output.last_hidden_state)
        return output
    return fn(output)


class Injector:
    """Everything one ``petl.apply`` added to a model, so that it can be removed.

    Hooks are registered with ``with_kwargs=True``: a hook sees the call's keyword
    arguments too, so it does not depend on transformers calling a sublayer positionally.
    Hosts, modules and handles are held directly (not by path), so ``copy.deepcopy`` of the
    model maps them onto the copy.
    """

    def __init__(self):
        self.children: list[tuple[nn.Module, str, nn.Module]] = []   # (host, name, module)
        self.handles: list = []                                       # torch RemovableHandles
        self.attributes: list[tuple[object, str, Any]] = []           # (object, name, old value)
        self.enabled = True  # False: every hook passes through, attributes show their old values

    # --- what a method uses --------------------------------------------------------------
    def add_child(self, host: nn.Module, name: str, module: nn.Module) -> nn.Module:
        """Make ``module`` the child ``name`` of ``host`` (its parameters are then named
        ``<host path>.<name>....`` in ``state_dict``)."""
        if name in host._modules:
            raise ConfigError(f"{type(host).__name__} already has a {name!r} module: a PETL method is applied twice")
        host.add_module(name, module)
        self.children.append((host, name, module))
        return module

    def forward_hook(self, host: nn.Module, hook: Callable) -> None:
        """``hook(host, args, kwargs, output) -> new output or None``."""
        self.handles.append(host.register_forward_hook(_Gate(self, hook), with_kwargs=True))

    def forward_pre_hook(self, host: nn.Module, hook: Callable) -> None:
        """``hook(host, args, kwargs) -> (args, kwargs) or None``."""
        self.handles.append(host.register_forward_pre_hook(_Gate(self, hook), with_kwargs=True))

    def transform_output(self, host: nn.Module, name: str, module: nn.Module) -> None:
        """Child ``name`` of ``host`` applied to ``host``'s output (the first element of a
        tuple output): ``output -> module(output)`` (Houlsby placement, gates)."""
        self.add_child(host, name, module)
        self.forward_hook(host, _OutputHook(module))

    def add_to_output(self, host: nn.Module, name: str, module: nn.Module, input_name: str = "input") -> None:
        """Child ``name`` of ``host`` whose ``module(x)`` of ``host``'s input ``x`` is added
        to ``host``'s output (LoRA on a Linear: ``W x + delta(x)``)."""
        self.add_child(host, name, module)
        self.forward_hook(host, _AddHook(module, input_name))

    def tap(self, host: nn.Module, read: Callable[[Any], None]) -> None:
        """Read-only: ``read(output)`` after every forward of ``host``; the output is not
        changed (a side network reading each layer's hidden states)."""
        self.forward_hook(host, _TapHook(read))

    def replace_input(self, host: nn.Module, replace: Callable[[Any], Any], input_name: str = "input") -> None:
        """``host`` computes on ``replace(x)`` instead of its first input ``x`` (e.g. the
        LM head reading a side network's output: ``slots.head_path``)."""
        self.forward_pre_hook(host, _InputHook(replace, input_name))

    def set_attribute(self, obj: object, name: str, value: Any) -> None:
        """``obj.name = value`` (e.g. ``model.prompts``), restored on removal."""
        self.attributes.append((obj, name, getattr(obj, name)))
        setattr(obj, name, value)

    # --- what petl.remove / petl.merge / petl.disabled use ------------------------------
    def set_enabled(self, enabled: bool) -> None:
        """Switch the method off (the hooks pass through, attributes hold their old values)
        or on again, without removing anything."""
        if enabled == self.enabled:
            return
        self.attributes = [(obj, name, _swap(obj, name, value)) for obj, name, value in self.attributes]
        self.enabled = enabled

    def remove(self) -> None:
        self.set_enabled(True)  # the attributes list holds the old values again
        for handle in reversed(self.handles):
            handle.remove()
        for host, name, _ in reversed(self.children):
            delattr(host, name)
        for obj, name, old in reversed(self.attributes):
            setattr(obj, name, old)
        self.handles, self.children, self.attributes = [], [], []


def _swap(obj: object, name: str, value: Any) -> Any:
    current = getattr(obj, name)
    setattr(obj, name, value)
    return current


# Hooks are small callables holding the module they call, so deepcopy maps them onto the
# copied module (a lambda would keep pointing at the original).
class _Gate:
    """A hook that only runs while its Injector is enabled (``petl.disabled``)."""

    def __init__(self, at: Injector, hook: Callable):
        self.at, self.hook = at, hook

    def __call__(self, *args):
        return self.hook(*args) if self.at.enabled else None


class _OutputHook:
    def __init__(self, module):
        self.module = module

    def __call__(self, host, args, kwargs, output):
        return _replace_output(output, self.module)


class _AddHook:
    def __init__(self, module, input_name):
        self.module, self.input_name = module, input_name

    def __call__(self, host, args, kwargs, output):
        x = first_input(args, kwargs, self.input_name)
        return _replace_output(output, lambda h: h + self.module(x))


class _TapHook:
    def __init__(self, read):
        self.read = read

    def __call__(self, host, args, kwargs, output):
        self.read(output)


class _InputHook:
    def __init__(self, replace, input_name):
        self.replace, self.input_name = replace, input_name

    def __call__(self, host, args, kwargs):
        if args:
            return (self.replace(args[0]), *args[1:]), kwargs
        if self.input_name in kwargs:
            return args, {**kwargs, self.input_name: self.replace(kwargs[self.input_name])}
        first_input(args, kwargs, self.input_name)  # raises the clear error


def check_method(config: object) -> Method:
    """``config`` if it implements the contract, else a clear error."""
    if not isinstance(config, Method):
        raise ConfigError(f"{type(config).__name__} is not a PETL method: derive it from "
                          "vladapter.petl.contract.Method (method, per_task, inject)")
    return config


def components_capability(components: Iterable[Method], name: str) -> list[str]:
    """The method names among ``components`` whose capability ``name`` is false."""
    return [c.method for c in components if not getattr(c, name)]
