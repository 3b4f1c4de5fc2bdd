"""Building blocks every PETL method shares: task routing, residual modules.

A method injects modules into the unmodified HF model by module path, through the
``Injector`` of ``petl/contract.py``: the new module becomes a child of the host module
(so it is in ``state_dict`` under the host's name) and a forward hook on the host applies
it to the host's output. Hooks hold the injected modules, so ``copy.deepcopy(model)``
keeps them pointing at the copies.
"""

from __future__ import annotations

from typing import Callable, Iterable

from torch import nn

from vladapter.errors import ConfigError

SHARED = "shared"


class TaskModules(nn.ModuleDict):
    """One module shared by every task (key ``"shared"``), or one module per task.

    ``modules[task]`` picks the module of the batch's task. A shared module is one module:
    every task gets the very same parameters.
    """

    def __init__(self, make: Callable[[], nn.Module], tasks: Iterable[str], shared: bool):
        tasks = tuple(tasks)
        if not shared and not tasks:
            raise ConfigError("a per-task PETL module needs the task keys: pass tasks=[...] to petl.apply")
        super().__init__({SHARED: make()} if shared else {t: make() for t in tasks})
        self.is_shared = shared

    def __getitem__(self, task: str | None) -> nn.Module:
        if self.is_shared:
            return self._modules[SHARED]
        module = self._modules.get(task) if task is not None else None
        if module is None:
            raise ConfigError(f"no per-task PETL module for task {task!r}; the method was applied for "
                              f"tasks {sorted(self._modules)}: pass task=<one of them> to the model")
        return module


class OutputTransform(nn.Module):
    """A module applied to its host's output: ``forward(h) -> h'`` (the first element when
    the host returns a tuple). Injected with ``Injector.transform_output``."""


def init_small(linear: nn.Linear, std: float = 1e-2) -> nn.Linear:
    """Near-zero weights, zero bias: a residual module starts close to the identity."""
    nn.init.normal_(linear.weight, std=std)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)
    return linear
