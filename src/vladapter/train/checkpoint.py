"""Resumable training state in safetensors + JSON (no pickle anywhere).

A checkpoint is a folder ``<work>/checkpoints/step-<N>/`` (``<work>``: the run's work folder,
vladapter.train.workdir) written atomically:

    state.safetensors   trainable parameters (by name), AdamW moments (by parameter
                        index), torch RNG states (CPU, and CUDA when the run is on a
                        GPU; one per rank)
    state.json          step, micro-batch position, parameter names, optimiser param
                        groups, scheduler state, the GradScaler's loss scale (fp16 runs),
                        the producer (vladapter.train.workdir)

Loading it into the same model, optimiser and scheduler continues the run exactly: an
interrupted and resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from vladapter.errors import TrainingError
from vladapter.utils.io import atomic_dir

STATE_TENSORS = "state.safetensors"
STATE_JSON = "state.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def checkpoint_dir(work: str | Path, step: int) -> Path:
    return Path(work) / "checkpoints" / f"step-{step:07d}"


def list_checkpoints(work: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temporary folders are ignored)."""
    root = Path(work) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := _STEP_DIR.match(p.name)) and (p / STATE_JSON).is_file()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(work: str | Path) -> Path | None:
    found = list_checkpoints(work)
    return found[-1] if found else None


def trainable_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(work: str | Path, step: int, micro: int, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, scheduler, rng_states: list[torch.Tensor],
                    extra: dict | None = None, keep: int = 1,
                    cuda_rng_states: list[torch.Tensor] | None = None,
                    scaler: torch.amp.GradScaler | None = None) -> Path:
    """Write the checkpoint of ``step`` atomically and prune to the newest ``keep``."""
    params = trainable_parameters(model)
    tensors = {f"param.{name}": p.detach().cpu().contiguous() for name, p in params.items()}
    opt_state = optimizer.state_dict()
    for index, state in opt_state["state"].items():
        for key, value in state.items():
            tensors[f"optimizer.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    for rank, rng in enumerate(rng_states):
        tensors[f"rng.{rank}"] = rng.cpu()
    for rank, rng in enumerate(cuda_rng_states or []):
        tensors[f"rng_cuda.{rank}"] = rng.cpu()
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in opt_state["param_groups"]]
    sched = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
    meta = {"step": step, "micro": micro, "parameters": list(params), "param_groups": groups,
            "scheduler": sched, **(extra or {})}
    if scaler is not None and scaler.is_enabled():  # fp16: the loss scale and its growth tracker
        meta["grad_scaler"] = scaler.state_dict()
    target = checkpoint_dir(work, step)
    with atomic_dir(target) as tmp:
        save_file(tensors, str(tmp / STATE_TENSORS))
        (tmp / STATE_JSON).write_text(json.dumps(meta, indent=1) + "\n")
    for old in list_checkpoints(work)[:-max(1, keep)]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def load_checkpoint(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler, rank: int = 0, scaler: torch.amp.GradScaler | None = None) -> dict:
    """Restore parameters, optimiser, scheduler, the GradScaler (when both the checkpoint and
    ``scaler`` have one) and this rank's RNGs (CPU; CUDA when both the checkpoint and this
    process have it); returns state.json."""
    path = Path(path)
    meta = json.loads((path / STATE_JSON).read_text())
    tensors = load_file(str(path / STATE_TENSORS))
    params = trainable_parameters(model)
    if list(params) != meta["parameters"]:
        missing = sorted(set(meta["parameters"]) ^ set(params))[:5]
        raise TrainingError(f"checkpoint {path} was written by a different model/method "
                            f"(parameters differ, e.g. {missing}); resume with the same configuration "
                            "or start a new run directory")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(tensors[f"param.{name}"].to(p.device, p.dtype))
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    scheduler.load_state_dict({**meta["scheduler"], "lr_lambdas": [None] * len(optimizer.param_groups)})
    if scaler is not None and scaler.is_enabled() and meta.get("grad_scaler"):
        scaler.load_state_dict(meta["grad_scaler"])
    rng = tensors.get(f"rng.{rank}", tensors.get("rng.0"))
    if rng is not None:
        torch.set_rng_state(rng)
    cuda_rng = tensors.get(f"rng_cuda.{rank}")
    if cuda_rng is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(cuda_rng)
    return meta


def read_state(path: str | Path) -> dict:
    """The state.json of a checkpoint folder."""
    return json.loads((Path(path) / STATE_JSON).read_text())
