"""Content hashes of models: what makes work files of one model tell apart from another's."""

from __future__ import annotations

import hashlib

import torch


def state_digest(module: torch.nn.Module) -> str:
    """sha256 of every parameter and buffer of ``module`` (names, dtypes, shapes, bytes):
    equal exactly when the weights are, whatever file or folder they came from."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
