"""Content hashes of models: what makes work files of one model tell apart from another's."""

from __future__ import annotations

import hashlib

import torch


def state_digest(module: torch.nn.Module, frozen_only: bool = False) -> str:
    """sha256 of every parameter and buffer of ``module`` (names, dtypes, shapes, bytes):
    equal exactly when the weights are, whatever file or folder they came from. With
    ``frozen_only``, of the parameters that do not train (and the buffers): the base a PETL
    method was trained on, which its saved file does not hold."""
    trained = {n for n, p in module.named_parameters(remove_duplicate=False) if p.requires_grad} if frozen_only else set()
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        if name in trained:
            continue
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
